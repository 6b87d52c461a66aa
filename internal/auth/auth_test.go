package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// memStore is an in-memory KeyStore; store/sqlite has its own tests.
type memStore struct {
	mu   sync.Mutex
	keys map[string]Key
	gets int
}

func newMemStore() *memStore { return &memStore{keys: map[string]Key{}} }

func (m *memStore) CreateKey(_ context.Context, k Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[k.ID]; ok {
		return fmt.Errorf("duplicate id %s", k.ID)
	}
	m.keys[k.ID] = k
	return nil
}

func (m *memStore) KeyByID(_ context.Context, id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	k, ok := m.keys[id]
	if !ok {
		return Key{}, ErrNotFound
	}
	return k, nil
}

func (m *memStore) ListKeys(context.Context) ([]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Key
	for _, k := range m.keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Key) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (m *memStore) RevokeKey(_ context.Context, id string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[id]
	if !ok {
		return ErrNotFound
	}
	if k.RevokedAt.IsZero() {
		k.RevokedAt = at
	}
	m.keys[id] = k
	return nil
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source for the Authenticator.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func TestGenerate(t *testing.T) {
	k1, s1, err := Generate(NewKey{Name: "a", Scope: ScopeInvoke, RatePerSec: 2.5}, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, s2, err := Generate(NewKey{Name: "a", Scope: ScopeInvoke}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Fatal("two generated keys are equal")
	}
	if !strings.HasPrefix(s1, KeyPrefix) {
		t.Errorf("key %q lacks prefix %q", s1, KeyPrefix)
	}
	if id, ok := ParseID(s1); !ok || id != k1.ID {
		t.Errorf("ParseID(%q) = %q, %v; want %q, true", s1, id, ok, k1.ID)
	}
	if strings.Contains(k1.Hash, s1) || k1.Hash != Hash(s1) {
		t.Errorf("stored hash %q is not the SHA-256 of the key", k1.Hash)
	}
	if !k1.matches(s1) || k1.matches(s2) {
		t.Error("matches: want true for own key, false for another")
	}
	// 256 bits of secret in base64url: 43 characters.
	_, secret, _ := strings.Cut(strings.TrimPrefix(s1, KeyPrefix), "_")
	if got, want := len(secret), 43; got != want {
		t.Errorf("secret length = %d, want %d", got, want)
	}
	if got, want := k1.Burst, 2; got != want {
		t.Errorf("default burst for 2.5/s = %d, want %d", got, want)
	}
	for _, n := range []NewKey{
		{Name: "", Scope: ScopeAdmin},
		{Name: "x", Scope: "root"},
		{Name: "x", Scope: ScopeInvoke, Functions: []string{"[bad"}},
		{Name: "x", Scope: ScopeInvoke, RatePerSec: -1},
	} {
		if _, _, err := Generate(n, t0); err == nil {
			t.Errorf("Generate(%+v): want an error", n)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"ember_0123456789abcdef_secret", true},
		{"ember_0123456789abcdef_", false},
		{"ember_0123456789abcdeg_secret", false},
		{"ember_0123_secret", false},
		{"sk-0123456789abcdef_secret", false},
		{"", false},
	} {
		if _, ok := ParseID(tc.in); ok != tc.ok {
			t.Errorf("ParseID(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}

func TestParseRateAndTTL(t *testing.T) {
	rates := []struct {
		in   string
		want float64
		err  bool
	}{
		{"", 0, false}, {"20/s", 20, false}, {"20", 20, false}, {"600/m", 10, false},
		{"3600/h", 1, false}, {"5/d", 0, true}, {"x/s", 0, true}, {"-1/s", 0, true},
	}
	for _, tc := range rates {
		got, err := ParseRate(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
	ttls := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", 0, false}, {"30d", 30 * 24 * time.Hour, false}, {"12h", 12 * time.Hour, false},
		{"0d", 0, true}, {"-5m", 0, true}, {"soon", 0, true},
	}
	for _, tc := range ttls {
		got, err := ParseTTL(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// server is a real HTTP server with the auth middleware in front of a
// Table: /healthz public, /metrics metrics, /admin admin, and /run/{fn}
// invoke with the handler's function check.
type server struct {
	*httptest.Server
	auth  *Authenticator
	store *memStore
	clock *clock
}

func newServer(t *testing.T) *server {
	t.Helper()
	st := newMemStore()
	c := &clock{now: t0}
	a := New(st, Options{Now: c.Now})
	mux := NewTable(nil)
	mux.Enforce(false)
	mux.Register("/healthz", RightPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	mux.Register("/metrics", RightMetrics, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") }))
	mux.Register("/admin", RightAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "admin ok")
	}))
	mux.Register("/run/{fn...}", RightInvoke, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := AllowFunction(FromContext(r.Context()), r.PathValue("fn")); err != nil {
			WriteError(w, err)
			return
		}
		io.WriteString(w, "hello "+FromContext(r.Context()).Name)
	}))
	for _, p := range KeysPatterns() {
		mux.Register(p, RightAdmin, a.KeysHandler())
	}
	srv := httptest.NewServer(a.Middleware(mux))
	t.Cleanup(srv.Close)
	return &server{Server: srv, auth: a, store: st, clock: c}
}

func (s *server) key(t *testing.T, n NewKey) (Key, string) {
	t.Helper()
	k, secret, err := s.auth.Create(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

type answer struct {
	status int
	code   string
	msg    string
	body   string
	header http.Header
}

func (s *server) get(t *testing.T, method, path, authz string, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: string(b), header: resp.Header}
	var env api.Error
	if json.Unmarshal(b, &env) == nil {
		a.code, a.msg = env.Error.Code, env.Error.Message
	}
	return a
}

func TestMiddleware(t *testing.T) {
	s := newServer(t)
	_, admin := s.key(t, NewKey{Name: "root", Scope: ScopeAdmin})
	_, scraper := s.key(t, NewKey{Name: "prom", Scope: ScopeMetrics})
	_, invoke := s.key(t, NewKey{Name: "ci", Scope: ScopeInvoke, Functions: []string{"echo", "team/*"}})
	_, anyFn := s.key(t, NewKey{Name: "all", Scope: ScopeInvoke})
	revokedKey, revoked := s.key(t, NewKey{Name: "old", Scope: ScopeInvoke})
	_, expiring := s.key(t, NewKey{Name: "temp", Scope: ScopeInvoke, TTL: time.Hour})
	if err := s.auth.Revoke(context.Background(), revokedKey.ID); err != nil {
		t.Fatal(err)
	}
	// A well-formed key with a real id but the wrong secret.
	id, _ := ParseID(invoke)
	forged := KeyPrefix + id + "_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

	tests := []struct {
		name     string
		path     string
		authz    string
		advance  time.Duration
		status   int
		code     string
		contains string
	}{
		{name: "no key", path: "/run/echo", status: 401, code: "missing_api_key", contains: "Authorization: Bearer"},
		{name: "basic scheme", path: "/run/echo", authz: "Basic " + invoke, status: 401, code: "missing_api_key"},
		{name: "garbage key", path: "/run/echo", authz: "Bearer nope", status: 401, code: "invalid_api_key"},
		{name: "unknown id", path: "/run/echo", authz: "Bearer ember_0123456789abcdef_xyz", status: 401, code: "invalid_api_key"},
		{name: "forged secret", path: "/run/echo", authz: "Bearer " + forged, status: 401, code: "invalid_api_key"},
		{name: "revoked", path: "/run/echo", authz: "Bearer " + revoked, status: 401, code: "api_key_revoked"},
		{name: "not yet expired", path: "/run/echo", authz: "Bearer " + expiring, status: 200, contains: "hello temp"},
		{name: "expired", path: "/run/echo", authz: "Bearer " + expiring, advance: time.Hour, status: 401, code: "api_key_expired"},
		{name: "invoke covered", path: "/run/echo", authz: "Bearer " + invoke, status: 200, contains: "hello ci"},
		{name: "invoke pattern", path: "/run/team/llm", authz: "bearer " + invoke, status: 200, contains: "hello ci"},
		{name: "invoke not covered", path: "/run/other", authz: "Bearer " + invoke, status: 403, code: "function_not_allowed", contains: `may not invoke "other"`},
		{name: "invoke all", path: "/run/other", authz: "Bearer " + anyFn, status: 200},
		{name: "invoke on admin", path: "/admin", authz: "Bearer " + invoke, status: 403, code: "insufficient_scope", contains: "needs scope admin"},
		{name: "admin on admin", path: "/admin", authz: "Bearer " + admin, status: 200, contains: "admin ok"},
		{name: "admin invokes", path: "/run/other", authz: "Bearer " + admin, status: 200},
		{name: "public path", path: "/healthz", status: 200, contains: "ok"},
		{name: "public path, bad key", path: "/healthz", authz: "Bearer nope", status: 401, code: "invalid_api_key"},
		{name: "metrics without a key", path: "/metrics", status: 401, code: "missing_api_key"},
		{name: "metrics, invoke key", path: "/metrics", authz: "Bearer " + invoke, status: 403, code: "insufficient_scope", contains: "needs scope metrics"},
		{name: "metrics, metrics key", path: "/metrics", authz: "Bearer " + scraper, status: 200, contains: "metrics"},
		{name: "metrics, admin key", path: "/metrics", authz: "Bearer " + admin, status: 200, contains: "metrics"},
		{name: "metrics key invokes", path: "/run/echo", authz: "Bearer " + scraper, status: 403, code: "insufficient_scope"},
		{name: "metrics key on admin", path: "/admin", authz: "Bearer " + scraper, status: 403, code: "insufficient_scope"},
		{name: "unregistered path", path: "/nope", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.clock.Set(t0.Add(tc.advance))
			a := s.get(t, "GET", tc.path, tc.authz, nil)
			if a.status != tc.status || a.code != tc.code {
				t.Errorf("GET %s = %d %q (%s), want %d %q", tc.path, a.status, a.code, a.body, tc.status, tc.code)
			}
			if !strings.Contains(a.body, tc.contains) && !strings.Contains(a.msg, tc.contains) {
				t.Errorf("body %q does not contain %q", a.body, tc.contains)
			}
			if tc.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestRevokeAppliesDespiteCache(t *testing.T) {
	s := newServer(t)
	k, secret := s.key(t, NewKey{Name: "ci", Scope: ScopeInvoke})
	if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 200 {
		t.Fatalf("before revoke: %d %s", a.status, a.body)
	}
	if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 200 {
		t.Fatalf("before revoke: %d %s", a.status, a.body)
	}
	if got, want := s.store.gets, 1; got != want {
		t.Errorf("store lookups for two requests = %d, want %d (cached)", got, want)
	}
	if err := s.auth.Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 401 || a.code != "api_key_revoked" {
		t.Errorf("after revoke: %d %s, want 401 api_key_revoked", a.status, a.body)
	}
}

func TestKeysHandler(t *testing.T) {
	s := newServer(t)
	_, admin := s.key(t, NewKey{Name: "root", Scope: ScopeAdmin})
	_, invoke := s.key(t, NewKey{Name: "ci", Scope: ScopeInvoke})
	bearer := "Bearer " + admin

	if a := s.get(t, "GET", "/v1/keys", "Bearer "+invoke, nil); a.status != 403 {
		t.Errorf("invoke key lists keys: %d, want 403", a.status)
	}
	body := `{"name":"bot","scope":"invoke","functions":["echo"],"rate":"600/m","burst":5,"max_concurrency":2,"expires":"30d"}`
	a := s.get(t, "POST", "/v1/keys", bearer, strings.NewReader(body))
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	var created api.KeyCreated
	if err := json.Unmarshal([]byte(a.body), &created); err != nil {
		t.Fatal(err)
	}
	if created.Key.RatePerSec != 10 || created.Key.ExpiresAt == nil || !created.Key.ExpiresAt.Equal(t0.Add(30*24*time.Hour)) {
		t.Errorf("created key = %+v, want 10/s expiring in 30d", created.Key)
	}
	if a := s.get(t, "POST", "/run/echo", "Bearer "+created.Secret, nil); a.status != 200 {
		t.Errorf("new key invoking echo: %d %s", a.status, a.body)
	}

	a = s.get(t, "GET", "/v1/keys", bearer, nil)
	if a.status != 200 || strings.Contains(a.body, created.Secret) || strings.Contains(a.body, "hash") {
		t.Errorf("list: %d %s: want 200 without secrets or hashes", a.status, a.body)
	}
	var listed []api.Key
	_ = json.Unmarshal([]byte(a.body), &listed)
	if got, want := len(listed), 3; got != want {
		t.Errorf("listed %d keys, want %d", got, want)
	}

	for _, bad := range []string{`{"name":"x","scope":"root"}`, `{"name":"x","scope":"invoke","rate":"fast"}`, `{"name":"x","scope":"invoke","extra":1}`} {
		if a := s.get(t, "POST", "/v1/keys", bearer, strings.NewReader(bad)); a.status != 400 {
			t.Errorf("create %s: %d, want 400", bad, a.status)
		}
	}
	if a := s.get(t, "DELETE", "/v1/keys/root", bearer, nil); a.status != 409 || a.code != "last_admin_key" {
		t.Errorf("revoking the last admin key: %d %s, want 409 last_admin_key", a.status, a.body)
	}
	if a := s.get(t, "DELETE", "/v1/keys/nobody", bearer, nil); a.status != 404 {
		t.Errorf("revoke unknown: %d, want 404", a.status)
	}
	if a := s.get(t, "DELETE", "/v1/keys/bot", bearer, nil); a.status != 204 {
		t.Errorf("revoke by name: %d %s, want 204", a.status, a.body)
	}
	if a := s.get(t, "POST", "/run/echo", "Bearer "+created.Secret, nil); a.status != 401 || a.code != "api_key_revoked" {
		t.Errorf("revoked key invoking: %d %s, want 401 api_key_revoked", a.status, a.body)
	}
}

func TestEnsureAdminKey(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	dir := filepath.Join(t.TempDir(), "data")

	path, created, err := EnsureAdminKey(ctx, st, dir, t0)
	if err != nil || !created {
		t.Fatalf("first start: %q, %v, %v; want created", path, created, err)
	}
	if got, want := path, filepath.Join(dir, AdminKeyFile); got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("admin.key mode = %v, want %v", got, want)
	}
	secret, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	keys, _ := st.ListKeys(ctx)
	if len(keys) != 1 || strings.Contains(fmt.Sprint(keys), secret) || strings.Contains(keys[0].Hash, strings.TrimSpace(string(raw))) {
		t.Fatalf("store holds %+v; want one key without the secret", keys)
	}
	p, err := New(st, Options{Now: func() time.Time { return t0 }}).Authenticate(ctx, "Bearer "+secret)
	if err != nil || p.Scope != ScopeAdmin {
		t.Fatalf("admin.key authenticates as %+v, %v; want admin", p, err)
	}

	if _, created, err := EnsureAdminKey(ctx, st, dir, t0.Add(time.Hour)); err != nil || created {
		t.Errorf("second start: created=%v err=%v; want nothing created", created, err)
	}
	if again, _ := ReadKeyFile(path); again != secret {
		t.Error("second start rewrote admin.key")
	}

	// With every admin key revoked, the next start makes a new one, so an
	// operator locked out can recover by restarting.
	_ = st.RevokeKey(ctx, keys[0].ID, t0)
	if _, created, err := EnsureAdminKey(ctx, st, dir, t0.Add(time.Hour)); err != nil || !created {
		t.Errorf("after revoking the admin: created=%v err=%v; want created", created, err)
	}
	if again, _ := ReadKeyFile(path); again == secret {
		t.Error("admin.key still holds the revoked key")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only admin.key (no temp files)", len(entries))
	}
}

func TestTableRights(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	admin := &Principal{Name: "root", Scope: ScopeAdmin}
	invoke := &Principal{Name: "ci", Scope: ScopeInvoke}
	scraper := &Principal{Name: "prom", Scope: ScopeMetrics}
	tests := []struct {
		name        string
		enforce     bool
		openMetrics bool
		right       Right
		p           *Principal
		status      int
	}{
		{"auth off lets admin routes through", false, false, RightAdmin, nil, 200},
		{"public", true, false, RightPublic, nil, 200},
		{"capability needs no key", true, false, RightCapability, nil, 200},
		{"metrics without a key", true, false, RightMetrics, nil, 401},
		{"metrics opened", true, true, RightMetrics, nil, 200},
		{"metrics, invoke key", true, false, RightMetrics, invoke, 403},
		{"metrics, metrics key", true, false, RightMetrics, scraper, 200},
		{"metrics, admin key", true, false, RightMetrics, admin, 200},
		{"invoke without a key", true, false, RightInvoke, nil, 401},
		{"invoke, invoke key", true, false, RightInvoke, invoke, 200},
		{"invoke, metrics key", true, false, RightInvoke, scraper, 403},
		{"invoke, admin key", true, false, RightInvoke, admin, 200},
		{"admin, invoke key", true, false, RightAdmin, invoke, 403},
		{"admin, admin key", true, false, RightAdmin, admin, 200},
		{"open metrics does not open admin", true, true, RightAdmin, nil, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewTable(nil)
			if tc.enforce {
				tab.Enforce(tc.openMetrics)
			}
			tab.Register("GET /x", tc.right, ok)
			req := httptest.NewRequest("GET", "/x", nil)
			if tc.p != nil {
				req = req.WithContext(NewContext(req.Context(), tc.p))
			}
			w := httptest.NewRecorder()
			tab.ServeHTTP(w, req)
			if got := w.Code; got != tc.status {
				t.Errorf("%s with %v = %d %s, want %d", tc.right, tc.p, got, w.Body, tc.status)
			}
		})
	}
}

func TestTableRegister(t *testing.T) {
	tab := NewTable(nil)
	h := http.NotFoundHandler()
	tab.Register("GET /b", RightAdmin, h)
	tab.Register("GET /a", RightPublic, h)
	want := []Route{{Pattern: "GET /a", Right: RightPublic}, {Pattern: "GET /b", Right: RightAdmin}}
	if got := tab.Routes(); !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
	for _, r := range []Right{"", "owner"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register with right %q did not panic", r)
				}
			}()
			tab.Register("GET /c", r, h)
		}()
	}
	if got := len(tab.Routes()); got != 2 {
		t.Errorf("after refused registrations, %d routes, want 2", got)
	}
}
func TestCheckAndResetAdminKeyFile(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	dir := t.TempDir()
	path, _, err := EnsureAdminKey(ctx, st, dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := ReadKeyFile(path)
	invoke, invokeSecret, _ := Generate(NewKey{Name: "ci", Scope: ScopeInvoke}, t0)
	_ = st.CreateKey(ctx, invoke)
	_, strangerSecret, _ := Generate(NewKey{Name: "elsewhere", Scope: ScopeAdmin}, t0)
	id, _ := ParseID(good)

	tests := []struct {
		name    string
		content *string // nil: no file
		want    string  // "" = valid
	}{
		{"valid", &good, ""},
		{"missing", nil, "is missing"},
		{"garbage", ptrTo("hello\n"), "does not hold an Ember key"},
		{"other database's key", &strangerSecret, "which this database does not know"},
		{"wrong secret", ptrTo(good[:len(good)-2] + "zz"), "wrong secret"},
		{"invoke key", &invokeSecret, "not an admin key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(path)
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckAdminKeyFile(ctx, st, dir, t0)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckAdminKeyFile = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrAdminKeyFile) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckAdminKeyFile = %v, want ErrAdminKeyFile saying %q", err, tt.want)
			}
		})
	}

	_ = st.RevokeKey(ctx, id, t0)
	_ = os.WriteFile(path, []byte(good), 0o600)
	if err := CheckAdminKeyFile(ctx, st, dir, t0.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "revoked or expired") {
		t.Errorf("revoked admin key in the file: %v, want revoked or expired", err)
	}

	// The recovery: a new admin key, written 0600, that authenticates.
	os.Remove(path)
	if _, err := ResetAdminKey(ctx, st, dir, t0); err != nil {
		t.Fatal(err)
	}
	if err := CheckAdminKeyFile(ctx, st, dir, t0); err != nil {
		t.Errorf("after ResetAdminKey: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.key after reset: %v, %v; want 0600", fi.Mode(), err)
	}
	fresh, _ := ReadKeyFile(path)
	if p, err := New(st, Options{Now: func() time.Time { return t0 }}).Authenticate(ctx, "Bearer "+fresh); err != nil || p.Scope != ScopeAdmin {
		t.Errorf("reset key authenticates as %+v, %v; want admin", p, err)
	}
}

func ptrTo(s string) *string { return &s }

// TestForgetAppliesARevocationMadeElsewhere: a key revoked in the store
// behind the authenticator's back (by another server) is refused at the
// next request once it is forgotten, not after the cache TTL.
func TestForgetAppliesARevocationMadeElsewhere(t *testing.T) {
	for _, forget := range []string{"the key", "every key"} {
		t.Run(forget, func(t *testing.T) {
			s := newServer(t)
			k, secret := s.key(t, NewKey{Name: "ci", Scope: ScopeInvoke})
			if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 200 {
				t.Fatalf("before revoke: %d %s", a.status, a.body)
			}
			if err := s.store.RevokeKey(context.Background(), k.ID, s.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 200 {
				t.Fatalf("revoked behind the cache, not forgotten: %d %s, want 200 from the cache (else this test shows nothing)", a.status, a.body)
			}
			id := k.ID
			if forget == "every key" {
				id = ""
			}
			s.auth.Forget(id)
			if a := s.get(t, "GET", "/run/x", "Bearer "+secret, nil); a.status != 401 || a.code != "api_key_revoked" {
				t.Errorf("after Forget(%q): %d %s, want 401 api_key_revoked", id, a.status, a.body)
			}
		})
	}
}

// TestMatchesHashForms: the stored hash is read as hex in either case;
// anything else matches nothing.
func TestMatchesHashForms(t *testing.T) {
	secret := "ember_0123456789abcdef_s3cr3t"
	h := Hash(secret)
	for _, tc := range []struct {
		hash string
		want bool
	}{
		{h, true},
		{strings.ToUpper(h), true},
		{h[:len(h)-2], false},
		{h + "00", false},
		{"zz" + h[2:], false},
		{Hash("other"), false},
	} {
		k := &Key{Hash: tc.hash}
		if got := k.matches(secret); got != tc.want {
			t.Errorf("matches with hash %q = %v, want %v", tc.hash, got, tc.want)
		}
	}
}
