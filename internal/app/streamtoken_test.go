package app

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/auth"
)

// TestStreamTokenAuth checks which requests the stream-token front door
// takes (a verified token, no key) and which it leaves to key auth.
func TestStreamTokenAuth(t *testing.T) {
	tokens, err := auth.NewStreamTokens(bytes.Repeat([]byte{1}, auth.StreamTokenKeyBytes), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := url.QueryEscape(tokens.Sign("p1", time.Now()))
	var reached string
	gw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = "gw"
		if !auth.StreamCapability(r.Context(), "p1") {
			reached = "gw without capability"
		}
	})
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = "authed" })
	h := streamTokenAuth(tokens, gw, authed)

	tests := []struct {
		name, method, target, authz string
		want                        string
		status                      int
	}{
		{"token, no key", "GET", "/v1/predictions/p1/stream?token=" + good, "", "gw", 200},
		{"token and a key", "GET", "/v1/predictions/p1/stream?token=" + good, "Bearer k", "authed", 200},
		{"no token", "GET", "/v1/predictions/p1/stream", "", "authed", 200},
		{"bad token", "GET", "/v1/predictions/p1/stream?token=1.abc", "", "", 401},
		{"empty token", "GET", "/v1/predictions/p1/stream?token=", "", "", 401},
		{"other prediction", "GET", "/v1/predictions/p2/stream?token=" + good, "", "", 401},
		{"not a stream", "GET", "/v1/predictions/p1?token=" + good, "", "authed", 200},
		{"nested path", "GET", "/v1/predictions/x/p1/stream?token=" + good, "", "authed", 200},
		{"dot segment", "GET", "/v1/predictions/../stream?token=" + good, "", "authed", 200},
		{"POST", "POST", "/v1/predictions/p1/stream?token=" + good, "", "authed", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reached = ""
			req := httptest.NewRequest(tc.method, tc.target, nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if reached != tc.want || rec.Code != tc.status {
				t.Errorf("%s %s reached %q with %d; want %q with %d", tc.method, tc.target, reached, rec.Code, tc.want, tc.status)
			}
		})
	}
}
