package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// The cluster credential is a shared secret that Ember's own nodes
// (gateways, controllers) present to each other on /internal/v1/… routes
// (RightCluster). It is not an API key: it never reaches an API route, and
// no API key, admin ones included, reaches a cluster route.

// Bounds of a cluster token: 32 bytes is 256 bits of a random token
// (`openssl rand -hex 32` gives 64 characters).
const (
	MinClusterTokenBytes = 32
	maxClusterTokenBytes = 4 << 10
)

// ErrClusterToken is wrapped by NewClusterToken's and
// ReadClusterTokenFile's errors.
var ErrClusterToken = errors.New("cluster token")

// ClusterToken holds the SHA-256 of the cluster secret (compared in
// constant time) and the secret itself, which a node sends.
type ClusterToken struct {
	secret string
	sum    [sha256.Size]byte
}

// NewClusterToken checks s: at least MinClusterTokenBytes, one printable
// word, and not shaped like an API key (so neither can pass for the other).
func NewClusterToken(s string) (*ClusterToken, error) {
	s = strings.TrimRight(s, " \t\r\n")
	switch {
	case len(s) < MinClusterTokenBytes:
		return nil, fmt.Errorf("%w: %d bytes, want at least %d (e.g. openssl rand -hex 32)", ErrClusterToken, len(s), MinClusterTokenBytes)
	case len(s) > maxClusterTokenBytes:
		return nil, fmt.Errorf("%w: %d bytes, want at most %d", ErrClusterToken, len(s), maxClusterTokenBytes)
	case strings.HasPrefix(s, KeyPrefix):
		return nil, fmt.Errorf("%w: starts with %s like an API key; use a random token (openssl rand -hex 32)", ErrClusterToken, KeyPrefix)
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("%w: holds a space, control or non-ASCII byte; want one printable word", ErrClusterToken)
		}
	}
	return &ClusterToken{secret: s, sum: sha256.Sum256([]byte(s))}, nil
}

// ReadClusterTokenFile reads a token file (--cluster-token-file, a
// mounted Secret). Like the admin key file it must not be readable by
// every user.
func ReadClusterTokenFile(path string) (*ClusterToken, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w file %s: %w", ErrClusterToken, path, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w file %s: not a regular file (mode %s)", ErrClusterToken, path, fi.Mode())
	case fi.Mode().Perm()&0o004 != 0:
		return nil, fmt.Errorf("%w file %s: readable by every user (mode %#o); chmod 600 it, or mount the Secret with defaultMode: 0400", ErrClusterToken, path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w file %s: %w", ErrClusterToken, path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxClusterTokenBytes+2))
	if err != nil {
		return nil, fmt.Errorf("%w file %s: %w", ErrClusterToken, path, err)
	}
	t, err := NewClusterToken(string(b))
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", path, err)
	}
	return t, nil
}

// Header returns the Authorization header value a node sends.
func (t *ClusterToken) Header() string { return "Bearer " + t.secret }

// Matches compares a presented token in constant time (both sides hashed,
// so neither the length nor a prefix of the secret leaks through timing).
func (t *ClusterToken) Matches(presented string) bool {
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(t.sum[:], got[:]) == 1
}

// String keeps the secret out of logs and error messages.
func (t *ClusterToken) String() string { return "cluster-token(redacted)" }

// The answers of a cluster route to a caller without the token.
var (
	ErrMissingClusterToken = &Error{Status: http.StatusUnauthorized, Code: "missing_cluster_token",
		Message: "this is a cluster-internal route: send Authorization: Bearer <cluster token> (--cluster-token-file)"}
	ErrInvalidClusterToken = &Error{Status: http.StatusUnauthorized, Code: "invalid_cluster_token",
		Message: "invalid cluster token"}
	ErrAPIKeyOnClusterRoute = &Error{Status: http.StatusForbidden, Code: "cluster_route",
		Message: "this is a cluster-internal route: API keys (admin ones included) are not accepted; it takes the cluster token"}
)

type clusterKey struct{}

// NewClusterContext marks ctx as a call from another Ember node.
func NewClusterContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, clusterKey{}, true)
}

// IsCluster reports whether the request came with the cluster token.
func IsCluster(ctx context.Context) bool {
	ok, _ := ctx.Value(clusterKey{}).(bool)
	return ok
}

// Cluster returns the guard of cluster-internal routes (mount it on
// /internal/v1/): a request passes only with Authorization: Bearer
// <token>, and then carries IsCluster in its context and no Principal.
// An API key gets 403, anything else 401. It replaces the API-key
// Authenticator on those routes: mount that one on the others only, so
// the token can never be taken for a key.
func Cluster(token *ClusterToken) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := checkCluster(token, r.Header.Values("Authorization")); err != nil {
				WriteError(w, err)
				return
			}
			ctx := NewContext(r.Context(), nil) // no API-key identity here
			next.ServeHTTP(w, r.WithContext(NewClusterContext(ctx)))
		})
	}
}

func checkCluster(token *ClusterToken, headers []string) error {
	if len(headers) == 0 {
		return ErrMissingClusterToken
	}
	if len(headers) > 1 {
		return ErrInvalidClusterToken
	}
	scheme, secret, _ := strings.Cut(strings.TrimSpace(headers[0]), " ")
	secret = strings.TrimSpace(secret)
	switch {
	case !strings.EqualFold(scheme, "Bearer") || secret == "":
		return ErrMissingClusterToken
	case token == nil: // no token configured: nothing can pass
		return ErrInvalidClusterToken
	case token.Matches(secret):
		return nil
	}
	if _, ok := ParseID(secret); ok {
		return ErrAPIKeyOnClusterRoute
	}
	return ErrInvalidClusterToken
}
