package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStreamTokens(t *testing.T) {
	key := bytes.Repeat([]byte{7}, StreamTokenKeyBytes)
	st, err := NewStreamTokens(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewStreamTokens(bytes.Repeat([]byte{8}, StreamTokenKeyBytes), time.Hour)
	t0 := time.Unix(1_800_000_000, 0)
	tok := st.Sign("pred1", t0)
	exp, mac, _ := strings.Cut(tok, ".")
	flipped := []byte(mac)
	flipped[0] ^= 1

	tests := []struct {
		name, id, token string
		now             time.Time
		ok              bool
	}{
		{"fresh", "pred1", tok, t0, true},
		{"just before expiry", "pred1", tok, t0.Add(time.Hour - time.Second), true},
		{"at expiry", "pred1", tok, t0.Add(time.Hour), false},
		{"another prediction", "pred2", tok, t0, false},
		{"id prefix", "pred", tok, t0, false},
		{"signed by another key", "pred1", other.Sign("pred1", t0), t0, false},
		{"expiry extended", "pred1", "9" + tok, t0, false},
		{"mac changed", "pred1", exp + "." + string(flipped), t0, false},
		{"mac padded", "pred1", tok + "=", t0, false},
		{"no dot", "pred1", exp + mac, t0, false},
		{"empty", "pred1", "", t0, false},
		{"too long", "pred1", tok + strings.Repeat("A", 100), t0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := st.VerifyStreamToken(tc.id, tc.token, tc.now)
			if tc.ok && err != nil {
				t.Fatalf("VerifyStreamToken = %v; want ok", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidStreamToken) {
				t.Fatalf("VerifyStreamToken = %v; want ErrInvalidStreamToken", err)
			}
		})
	}
	if len(tok) > maxStreamTokenLen {
		t.Errorf("a token is %d bytes, over the %d parsed", len(tok), maxStreamTokenLen)
	}
}

func TestStreamTokenKey(t *testing.T) {
	if _, err := NewStreamTokens(make([]byte, StreamTokenKeyBytes-1), 0); err == nil {
		t.Error("a short key was accepted")
	}
	s, err := GenerateStreamTokenKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := DecodeStreamTokenKey(s)
	if err != nil || len(k) != StreamTokenKeyBytes || bytes.Equal(k, make([]byte, StreamTokenKeyBytes)) {
		t.Fatalf("DecodeStreamTokenKey(GenerateStreamTokenKey()) = %x, %v", k, err)
	}
	if _, err := DecodeStreamTokenKey("c2hvcnQ="); err == nil {
		t.Error("a short stored key was accepted")
	}
}

func TestStreamCapabilityContext(t *testing.T) {
	ctx := WithStreamCapability(context.Background(), "p1")
	for id, want := range map[string]bool{"p1": true, "p2": false, "": false} {
		if got := StreamCapability(ctx, id); got != want {
			t.Errorf("StreamCapability(ctx for p1, %q) = %v; want %v", id, got, want)
		}
	}
	if StreamCapability(context.Background(), "p1") {
		t.Error("a bare context carries a capability")
	}
}
