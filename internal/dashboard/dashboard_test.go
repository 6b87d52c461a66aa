package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/route"
)

type fakeFns struct{ fns []api.Function }

func (f fakeFns) List() []api.Function { return f.fns }
func (f fakeFns) Get(name string) (api.Function, bool) {
	for _, fn := range f.fns {
		if fn.Name == name {
			return fn, true
		}
	}
	return api.Function{}, false
}

type fakeInstances struct{}

func (fakeInstances) Instances(fn string) ([]api.Instance, bool) { return nil, true }
func (fakeInstances) Status(fn string, now time.Time) (api.FunctionStatus, bool) {
	return api.FunctionStatus{State: api.FunctionScaledToZero}, true
}
func (fakeInstances) Logs(fn string, tail int) ([]api.LogLine, error) {
	return []api.LogLine{{Instance: "i1", Line: "<script>alert(1)</script>"}}, nil
}

// fakeKeys knows two keys; revoke makes one fail as the store would.
type fakeKeys struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (k *fakeKeys) Authenticate(_ context.Context, header string) (*auth.Principal, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := strings.TrimPrefix(header, "Bearer ")
	if k.revoked[key] {
		return nil, auth.ErrKeyRevoked
	}
	switch key {
	case "admin-key":
		return &auth.Principal{KeyID: "a", Name: "root", Scope: auth.ScopeAdmin}, nil
	case "invoke-key":
		return &auth.Principal{KeyID: "i", Name: "app", Scope: auth.ScopeInvoke, Functions: []string{"mine"}}, nil
	}
	return nil, auth.ErrInvalidKey
}

type mux struct{ *http.ServeMux }

func (m mux) Register(p string, _ auth.Right, h http.Handler) { m.Handle(p, h) }

func newTestServer(t *testing.T) (*httptest.Server, *fakeKeys) {
	t.Helper()
	srv, keys, _ := newTestServerD(t)
	return srv, keys
}

func newTestServerD(t *testing.T) (*httptest.Server, *fakeKeys, *Dashboard) {
	t.Helper()
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	keys := &fakeKeys{revoked: map[string]bool{}}
	now := time.Now()
	d := New(Options{Functions: fakeFns{[]api.Function{{Name: "mine", Spec: json.RawMessage(`{}`), UpdatedAt: now}, {Name: "theirs", Spec: json.RawMessage(`{}`), UpdatedAt: now}}},
		Instances: fakeInstances{}, Keys: keys, Recorder: NewRecorder(), Catalogue: cat})
	m := mux{http.NewServeMux()}
	d.Mount(m)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return srv, keys, d
}

// client keeps cookies and does not follow redirects, so each answer can
// be checked.
func client(t *testing.T) *http.Client {
	jar := &jarT{m: map[string][]*http.Cookie{}}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type jarT struct {
	mu sync.Mutex
	m  map[string][]*http.Cookie
}

func (j *jarT) SetCookies(u *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		if c.MaxAge < 0 {
			delete(j.m, c.Name)
			continue
		}
		j.m[c.Name] = []*http.Cookie{c}
	}
}

func (j *jarT) Cookies(u *url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*http.Cookie
	for _, cs := range j.m {
		out = append(out, cs...)
	}
	return out
}

func signIn(t *testing.T, c *http.Client, base, key string) *http.Response {
	t.Helper()
	resp, err := c.PostForm(base+"/ui/signin", url.Values{"key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

func TestSignInSetsAStrictHttpOnlyCookie(t *testing.T) {
	srv, _ := newTestServer(t)
	c := client(t)
	resp := signIn(t, c, srv.URL, "admin-key")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in answered %d to %q, want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 {
		t.Fatalf("cookies = %v, want one", ck)
	}
	if c := ck[0]; !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" || c.Secure || len(c.Value) < 40 || strings.Contains(c.Value, "admin-key") {
		t.Errorf("cookie = %+v: want HttpOnly, SameSite=Strict, Path=/ui, not Secure over plain HTTP, a random id without the key", c)
	}
}

func TestPagesNeedASession(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, p := range []string{"/ui/", "/ui/functions/mine", "/ui/jobs", "/ui/routes", "/ui/cost"} {
		resp, _ := get(t, client(t), srv.URL+p)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin") {
			t.Errorf("GET %s without a session = %d %q, want 303 to the sign-in form", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, _ := get(t, client(t), srv.URL+"/ui/events?page=functions")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /ui/events without a session = %d, want 401", resp.StatusCode)
	}
}

func TestBadKeyIsRefusedWithTheReason(t *testing.T) {
	srv, _ := newTestServer(t)
	resp := signIn(t, client(t), srv.URL, "nope")
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "signin?m=") || len(resp.Cookies()) != 0 {
		t.Errorf("bad key: Location %q, cookies %v; want back to the form with a message and no cookie", loc, resp.Cookies())
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv, _ := newTestServer(t)
	if resp, _ := get(t, client(t), srv.URL+"/ui/assets/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/assets/ = %d, want 404 (no listing)", resp.StatusCode)
	}
	for _, p := range []string{"/ui/signin", "/ui/assets/ui.css"} {
		resp, _ := get(t, client(t), srv.URL+p)
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
}

func TestInvokeKeySeesOnlyItsFunctions(t *testing.T) {
	srv, _ := newTestServer(t)
	c := client(t)
	signIn(t, c, srv.URL, "invoke-key")
	resp, body := get(t, c, srv.URL+"/ui/")
	if resp.StatusCode != 200 || !strings.Contains(body, "/ui/functions/mine") || strings.Contains(body, "theirs") {
		t.Fatalf("invoke key's function list (%d) should show mine and not theirs:\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, srv.URL+"/ui/functions/theirs"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("invoke key opening another's function = %d, want 404", resp.StatusCode)
	}
	if _, body := get(t, c, srv.URL+"/ui/functions/mine"); !strings.Contains(body, "&lt;script&gt;") || strings.Contains(body, "<script>alert") {
		t.Errorf("log lines must be escaped:\n%s", body)
	}
}

func TestSignOutNeedsTheCSRFToken(t *testing.T) {
	srv, _ := newTestServer(t)
	c := client(t)
	signIn(t, c, srv.URL, "admin-key")
	_, body := get(t, c, srv.URL+"/ui/")
	i := strings.Index(body, `name="csrf" value="`)
	if i < 0 {
		t.Fatal("no csrf field on the page")
	}
	token := body[i+len(`name="csrf" value="`):]
	token = token[:strings.IndexByte(token, '"')]
	resp, err := c.PostForm(srv.URL+"/ui/signout", url.Values{"csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out with a wrong token = %d, want 403", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/ui/signout", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out from another origin = %d, want 403", resp.StatusCode)
	}
	if resp, err = c.PostForm(srv.URL+"/ui/signout", url.Values{"csrf": {token}}); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out = %d, want 303", resp.StatusCode)
	}
	if resp, _ := get(t, c, srv.URL+"/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out /ui/ = %d, want a redirect to sign in", resp.StatusCode)
	}
}

func TestRevokedKeyEndsTheSession(t *testing.T) {
	srv, keys := newTestServer(t)
	c := client(t)
	signIn(t, c, srv.URL, "admin-key")
	if resp, _ := get(t, c, srv.URL+"/ui/"); resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	keys.mu.Lock()
	keys.revoked["admin-key"] = true
	keys.mu.Unlock()
	resp, _ := get(t, c, srv.URL+"/ui/")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "revoked") {
		t.Errorf("revoked key: %d to %q, want a redirect saying it was revoked", resp.StatusCode, loc)
	}
	keys.mu.Lock()
	keys.revoked["admin-key"] = false
	keys.mu.Unlock()
	if resp, _ := get(t, c, srv.URL+"/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the session must stay closed after a revocation, got %d", resp.StatusCode)
	}
}

func TestCostModelRecomputesFromTheForm(t *testing.T) {
	srv, _ := newTestServer(t)
	c := client(t)
	signIn(t, c, srv.URL, "invoke-key")
	_, low := get(t, c, srv.URL+"/ui/cost?requests_per_day=100&seconds_per_request=1&hardware=a100-40gb&idle_timeout_s=60")
	_, high := get(t, c, srv.URL+"/ui/cost?requests_per_day=500000&seconds_per_request=1&hardware=a100-40gb&idle_timeout_s=60")
	table := func(s string) string {
		i := strings.Index(s, `id="model-table"`)
		if i < 0 {
			t.Fatalf("no model table:\n%s", s)
		}
		return s[i:]
	}
	if table(low) == table(high) {
		t.Error("the model table did not change with requests/day")
	}
	if !strings.Contains(low, "<polyline") || !strings.Contains(low, "Crossovers") {
		t.Error("no chart or crossovers")
	}
	_, bad := get(t, c, srv.URL+"/ui/cost?requests_per_day=-5")
	if !strings.Contains(bad, "requests_per_day: a number from 1 to") {
		t.Errorf("a bad input must be named:\n%s", bad)
	}
}

func TestStreamsAreBounded(t *testing.T) {
	d := New(Options{MaxStreams: 1, Functions: fakeFns{}, Instances: fakeInstances{}, Recorder: NewRecorder()})
	d.streams <- struct{}{} // one stream open
	rec := httptest.NewRecorder()
	d.events(rec, httptest.NewRequest("GET", "/ui/events?page=functions", nil), viewer{})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("past the bound: %d %v, want 503 with Retry-After", rec.Code, rec.Header())
	}
}

func TestFramesRenderOncePerSample(t *testing.T) {
	var f frames
	r := NewRecorder()
	n := 0
	render := func() map[string]string { n++; return map[string]string{"x": "y"} }
	for range 10 {
		f.get(r.Changed(), "fn", render)
	}
	if n != 1 {
		t.Errorf("rendered %d times for one sample, want 1", n)
	}
	r.Sample(time.Now(), nil, nil)
	f.get(r.Changed(), "fn", render)
	if n != 2 {
		t.Errorf("rendered %d times after a new sample, want 2", n)
	}
}

func TestRevocationEndsAnOpenStream(t *testing.T) {
	srv, keys, d := newTestServerD(t)
	c := client(t)
	signIn(t, c, srv.URL, "admin-key")
	resp, err := c.Get(srv.URL + "/ui/events?page=functions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	b := make([]byte, 64<<10)
	if n, err := resp.Body.Read(b); err != nil || !strings.HasPrefix(string(b[:n]), "data: {") {
		t.Fatalf("first message %q, %v", b[:n], err)
	}
	keys.mu.Lock()
	keys.revoked["admin-key"] = true
	keys.mu.Unlock()
	d.rec.Sample(time.Now(), nil, nil) // the next message is due: the key is checked first
	if n, err := resp.Body.Read(b); err == nil {
		t.Errorf("the stream went on after the key was revoked: %q", b[:n])
	}
}

func TestCookieIsSecureOverTLS(t *testing.T) {
	keys := &fakeKeys{revoked: map[string]bool{}}
	d := New(Options{Functions: fakeFns{}, Instances: fakeInstances{}, Keys: keys, Recorder: NewRecorder()})
	m := mux{http.NewServeMux()}
	d.Mount(m)
	srv := httptest.NewTLSServer(m)
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(srv.URL+"/ui/signin", url.Values{"key": {"admin-key"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Cookies(); len(ck) != 1 || !ck[0].Secure {
		t.Errorf("cookies over TLS = %+v, want one Secure cookie", ck)
	}
}

type fakeRoutes []api.Route

func (f fakeRoutes) List() []api.Route { return f }

// fakePrices prices persistent at 1 + qps and serverless at 2×qps, or
// fails for the routes named in fail.
type fakePrices struct{ fail string }

func (f fakePrices) HourlyCosts(r *route.Route, qps float64) (float64, float64, error) {
	if r.Name == f.fail {
		return 0, 0, errors.New("no measured requests")
	}
	return 1 + qps, 2 * qps, nil
}

// TestCostRoutesDrawBothPrices: a cost-policy route's page shows both
// targets' prices over time at the measured QPS; a qps route, or a cost
// route the model cannot price yet, shows none.
func TestCostRoutesDrawBothPrices(t *testing.T) {
	st := func(qps float64) *api.RouteStatus { return &api.RouteStatus{Choice: "serverless", QPS: qps} }
	spec := func(policy string) json.RawMessage {
		return json.RawMessage(`{"targets":{"persistent":{"url":"http://p","usd_per_hour":1},"serverless":{"function":"f"}},"policy":` + policy + `}`)
	}
	tests := []struct {
		name, policy, fail string
		want, notWant      string
	}{
		{name: "cost", policy: `{"type":"cost"}`, want: "now: persistent $1.50/h · serverless $1.00/h", notWant: "$NaN"},
		{name: "qps", policy: `{"threshold":3}`, notWant: "price per hour"},
		{name: "unpriced", policy: `{"type":"cost"}`, fail: "unpriced", notWant: "price per hour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes := fakeRoutes{{Name: tt.name, Spec: spec(tt.policy), Status: st(0.5)}}
			d := New(Options{Functions: fakeFns{}, Instances: fakeInstances{}, Routes: routes, Recorder: NewRecorder(),
				Prices: fakePrices{fail: tt.fail}})
			t0 := time.Now()
			d.now = func() time.Time { return t0.Add(2 * time.Second) }
			d.sample(t0)
			d.sample(t0.Add(time.Second))
			html := string(d.routesFragment(viewer{}))
			if tt.want != "" && !strings.Contains(html, tt.want) {
				t.Errorf("routes page lacks %q:\n%s", tt.want, html)
			}
			if strings.Contains(html, tt.notWant) {
				t.Errorf("routes page has %q:\n%s", tt.notWant, html)
			}
		})
	}
}
