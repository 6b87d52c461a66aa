package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stream tokens are per-object capabilities: a prediction's urls.stream
// carries one, so whoever holds that URL (the official replicate client
// fetches it without the API key, as Replicate's stream URLs are capability
// URLs) may read that one prediction's event stream until the token
// expires, and nothing else: not the prediction, not its cancel, not any
// other prediction.
//
// A token reads "<expiry, Unix seconds>.<base64url HMAC-SHA256>", the MAC
// keyed by a server secret over a purpose label, the prediction id and the
// expiry, so it cannot be moved to another prediction, extended or reused
// for another purpose.

// DefaultStreamTokenTTL is how long a stream URL works after it was
// rendered. Every rendering of a prediction (create, get, list, webhook
// body) carries a fresh one; a stream that has started runs to its end.
const DefaultStreamTokenTTL = time.Hour

// StreamTokenKeyBytes is the size of the signing key.
const StreamTokenKeyBytes = 32

// maxStreamTokenLen bounds what is parsed: an expiry and a 43-byte MAC.
const maxStreamTokenLen = 64

const streamTokenPurpose = "ember-stream-v1"

// ErrInvalidStreamToken is the answer to a stream token that is malformed,
// forged, for another prediction or expired (one answer for all, so a
// token reveals nothing about why it failed).
var ErrInvalidStreamToken = &Error{Status: http.StatusUnauthorized, Code: "invalid_stream_token",
	Message: "invalid or expired stream token: get the prediction again for a fresh urls.stream"}

// StreamTokens signs and verifies stream tokens. It holds no mutable state.
type StreamTokens struct {
	key []byte
	ttl time.Duration
}

// NewStreamTokens returns a signer over key (at least StreamTokenKeyBytes
// random bytes, kept secret by the server) whose tokens live ttl
// (DefaultStreamTokenTTL when ≤ 0).
func NewStreamTokens(key []byte, ttl time.Duration) (*StreamTokens, error) {
	if len(key) < StreamTokenKeyBytes {
		return nil, fmt.Errorf("stream token key: want at least %d bytes, got %d", StreamTokenKeyBytes, len(key))
	}
	if ttl <= 0 {
		ttl = DefaultStreamTokenTTL
	}
	return &StreamTokens{key: append([]byte(nil), key...), ttl: ttl}, nil
}

// Sign returns a token for prediction id, valid from now for the TTL.
func (s *StreamTokens) Sign(id string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(s.ttl).Unix(), 10)
	return exp + "." + base64.RawURLEncoding.EncodeToString(s.mac(id, exp))
}

// VerifyStreamToken returns nil if token grants reading prediction id's
// stream at now, else ErrInvalidStreamToken.
func (s *StreamTokens) VerifyStreamToken(id, token string, now time.Time) error {
	if len(token) > maxStreamTokenLen {
		return ErrInvalidStreamToken
	}
	exp, sig, ok := strings.Cut(token, ".")
	if !ok {
		return ErrInvalidStreamToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(id, exp)) {
		return ErrInvalidStreamToken
	}
	// Only a token this server signed gets this far, so exp is its own
	// decimal rendering.
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() >= t {
		return ErrInvalidStreamToken
	}
	return nil
}

func (s *StreamTokens) mac(id, exp string) []byte {
	m := hmac.New(sha256.New, s.key)
	// NUL-separated: ids and expiries hold no NUL, so fields cannot shift.
	m.Write([]byte(streamTokenPurpose + "\x00" + id + "\x00" + exp))
	return m.Sum(nil)
}

// GenerateStreamTokenKey returns a fresh signing key, base64-encoded for
// storage.
func GenerateStreamTokenKey() (string, error) {
	b := make([]byte, StreamTokenKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("stream token key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeStreamTokenKey decodes a key stored by GenerateStreamTokenKey.
func DecodeStreamTokenKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("stream token key is not base64: %w", err)
	}
	if len(b) < StreamTokenKeyBytes {
		return nil, errors.New("stream token key is too short")
	}
	return b, nil
}

type capKey struct{}

// WithStreamCapability returns ctx carrying a verified stream capability for
// prediction id (the caller has checked the token).
func WithStreamCapability(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, capKey{}, id)
}

// StreamCapability reports whether ctx carries a verified stream capability
// for prediction id.
func StreamCapability(ctx context.Context, id string) bool {
	got, ok := ctx.Value(capKey{}).(string)
	return ok && id != "" && got == id
}
