package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testClusterToken = "0123456789abcdef0123456789abcdef0123456789abcdef" // 48 bytes

func TestNewClusterToken(t *testing.T) {
	tests := []struct {
		in, want string // want "" = accepted
	}{
		{testClusterToken, ""},
		{testClusterToken + "\n", ""},
		{strings.Repeat("x", 31), "31 bytes, want at least 32"},
		{"", "0 bytes"},
		{"ember_0123456789abcdef_" + strings.Repeat("A", 43), "like an API key"},
		{strings.Repeat("x", 20) + " " + strings.Repeat("y", 20), "space, control or non-ASCII"},
		{strings.Repeat("x", 5000), "at most 4096"},
	}
	for _, tc := range tests {
		tok, err := NewClusterToken(tc.in)
		if tc.want == "" {
			if err != nil || !tok.Matches(strings.TrimSpace(tc.in)) {
				t.Errorf("NewClusterToken(%.20q) = %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrClusterToken) {
			t.Errorf("NewClusterToken(%.20q) err = %v, want %q", tc.in, err, tc.want)
		}
	}
	tok, _ := NewClusterToken(testClusterToken)
	if tok.Matches(testClusterToken[:40]) || tok.Matches(testClusterToken+"0") || tok.Matches("") {
		t.Error("a prefix, a longer string or nothing matched the token")
	}
	if s := tok.String(); strings.Contains(s, testClusterToken) {
		t.Errorf("String() shows the secret: %s", s)
	}
}

func TestReadClusterTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, mode)
		return p
	}
	if tok, err := ReadClusterTokenFile(write("ok", testClusterToken+"\n", 0o400)); err != nil || !tok.Matches(testClusterToken) {
		t.Fatalf("good file: %v", err)
	}
	for _, tc := range []struct{ path, want string }{
		{write("open", testClusterToken, 0o644), "readable by every user"},
		{write("short", "abc", 0o600), "3 bytes, want at least 32"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, err := ReadClusterTokenFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: err = %v, want %q and the path", tc.path, err, tc.want)
		}
	}
}

// TestClusterAndAPIKeysDoNotMix builds the server's shape: /internal/v1/
// behind the Cluster guard, everything else behind the API-key
// Authenticator, one Table for both, and checks both directions.
func TestClusterAndAPIKeysDoNotMix(t *testing.T) {
	st := newMemStore()
	adminKey, adminSecret, _ := Generate(NewKey{Name: "root", Scope: ScopeAdmin}, t0)
	_ = st.CreateKey(t.Context(), adminKey)
	tok, err := NewClusterToken(testClusterToken)
	if err != nil {
		t.Fatal(err)
	}
	authn := New(st, Options{Now: func() time.Time { return t0 }})
	tab := NewTable(nil)
	tab.Enforce(false)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if FromContext(r.Context()) != nil && IsCluster(r.Context()) {
			t.Error("a request carries both a key and the cluster mark")
		}
		io.WriteString(w, "ok")
	})
	tab.Register("POST /internal/v1/report", RightCluster, ok)
	tab.Register("GET /v1/functions", RightAdmin, ok)
	tab.Register("GET /v1/open", RightPublic, ok)
	mux := http.NewServeMux()
	mux.Handle("/internal/", Cluster(tok)(tab))
	mux.Handle("/", authn.Middleware(tab))

	tests := []struct {
		name, method, path, header string
		status                     int
		code                       string
	}{
		{"cluster token on a cluster route", "POST", "/internal/v1/report", "Bearer " + testClusterToken, 200, ""},
		{"admin key on a cluster route", "POST", "/internal/v1/report", "Bearer " + adminSecret, 403, "cluster_route"},
		{"no credential on a cluster route", "POST", "/internal/v1/report", "", 401, "missing_cluster_token"},
		{"wrong token on a cluster route", "POST", "/internal/v1/report", "Bearer " + strings.Repeat("z", 48), 401, "invalid_cluster_token"},
		{"basic auth on a cluster route", "POST", "/internal/v1/report", "Basic " + testClusterToken, 401, "missing_cluster_token"},
		{"cluster token as an API key", "GET", "/v1/functions", "Bearer " + testClusterToken, 401, "invalid_api_key"},
		{"cluster token on a public route", "GET", "/v1/open", "Bearer " + testClusterToken, 401, "invalid_api_key"},
		{"admin key on an admin route", "GET", "/v1/functions", "Bearer " + adminSecret, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.code) {
				t.Fatalf("= %d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
			if strings.Contains(w.Body.String(), testClusterToken) {
				t.Fatal("the answer echoes the token")
			}
		})
	}

	// The guard in front of the Authenticator (one chain for every
	// path): the admitted token is not then read as an API key.
	chained := Cluster(tok)(authn.Middleware(tab))
	req := httptest.NewRequest("POST", "/internal/v1/report", nil)
	req.Header.Set("Authorization", "Bearer "+testClusterToken)
	w := httptest.NewRecorder()
	chained.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("Cluster → Authenticator → Table with the token = %d %s, want 200", w.Code, w.Body)
	}

	// A cluster route mounted without the guard (a wiring mistake) stays
	// shut to API keys too, with or without Enforce.
	for _, enforce := range []bool{true, false} {
		bare := NewTable(nil)
		if enforce {
			bare.Enforce(false)
		}
		bare.Register("POST /internal/v1/report", RightCluster, ok)
		for _, p := range []*Principal{nil, {Name: "root", Scope: ScopeAdmin}} {
			req := httptest.NewRequest("POST", "/internal/v1/report", nil)
			req = req.WithContext(NewContext(req.Context(), p))
			w := httptest.NewRecorder()
			bare.ServeHTTP(w, req)
			if w.Code == 200 {
				t.Errorf("enforce=%v principal=%v reached a cluster route without the token", enforce, p)
			}
		}
	}
}
