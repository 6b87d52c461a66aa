package auth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// echo answers with the pattern and path value the router gave it.
func echo(wildcard string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Pattern+" | "+r.PathValue(wildcard))
	})
}

// restEcho is echo("rest") as an auth.RestHandler: the lane passes the
// value, the mux sets it on the request, and both answer the same.
type restEcho struct{}

func (restEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.Pattern+" | "+r.PathValue("rest"))
}

func (restEcho) ServeRest(w http.ResponseWriter, r *http.Request, rest string) {
	if r.PathValue("rest") != "" {
		panic("the lane set the path value it passes") // it costs a map per call
	}
	io.WriteString(w, r.Pattern+" | "+rest)
}

// gatewayLike is a table shaped like the gateway's: method routes beside
// the one method-less catch-all under /v1/run/.
func gatewayLike(extra ...string) *Table {
	return gatewayWith(echo("rest"), extra...)
}

// gatewayWith is gatewayLike with run as the /v1/run/{rest...} handler.
func gatewayWith(run http.Handler, extra ...string) *Table {
	tab := NewTable(nil)
	for _, p := range []string{"/", "GET /healthz", "/v1/chat/completions", "GET /v1/functions/{rest...}",
		"DELETE /v1/functions/{rest...}", "POST /v1/functions/{name}/batch", "GET /v1/models/{id...}",
		"POST /v1/models/{owner}/{name}/predictions", "GET /ui/{$}", "GET /ui/assets/", "GET /v1/predictions/{id}"} {
		tab.Register(p, RightPublic, echo("rest"))
	}
	tab.Register("/v1/run/{rest...}", RightInvoke, run)
	for _, p := range extra {
		tab.Register(p, RightPublic, echo("rest"))
	}
	return tab
}

// TestFastLaneAgreesWithMux serves the same requests through the table
// (lane first) and through its ServeMux alone: status, Location, pattern
// and path value must be the same for every one.
func TestFastLaneAgreesWithMux(t *testing.T) {
	paths := []string{"/v1/run/sim/predict", "/v1/run/sim", "/v1/run/", "/v1/run", "/v1/run//x", "/v1/run/./x",
		"/v1/run/a/../b", "/v1/run/a/..", "/v1/run/a/.", "/v1/run/a%2Fb/c", "/v1/run/a%25zz", "/v1/run/%2e%2e/x", "/v1/run/a%20b/",
		"/v1/run/sim/predict/", "/v1/runx/y", "/V1/run/x", "/v1/run/special", "/v1/functions/x", "/healthz", "/x"}
	tables := map[string]struct {
		tab      *Table
		wantFast bool
	}{
		"gateway":              {gatewayLike(), true},
		"rest handler":         {gatewayWith(restEcho{}), true},
		"rest handler, clash":  {gatewayWith(restEcho{}, "POST /v1/run/special"), false},
		"literal under prefix": {gatewayLike("POST /v1/run/special"), false},
		"wildcard over prefix": {gatewayLike("/v1/{kind}/{all...}"), false},
		"subtree at prefix":    {gatewayLike("GET /v1/run/"), false},
		"escaped literal":      {gatewayLike("/v1/r%75n/special"), false},
	}
	for name, tc := range tables {
		t.Run(name, func(t *testing.T) {
			got := slices.Contains(tc.tab.FastRoutes(), "/v1/run/{rest...}")
			if got != tc.wantFast {
				t.Fatalf("fast lane holds /v1/run/{rest...}: %v, want %v (lane %q)", got, tc.wantFast, tc.tab.FastRoutes())
			}
			for _, method := range []string{"GET", "POST", "DELETE", "CONNECT"} {
				for _, p := range paths {
					lane, mux := httptest.NewRecorder(), httptest.NewRecorder()
					tc.tab.ServeHTTP(lane, httptest.NewRequest(method, "http://ember.test"+p, nil))
					tc.tab.mux.ServeHTTP(mux, httptest.NewRequest(method, "http://ember.test"+p, nil))
					if lane.Code != mux.Code || lane.Body.String() != mux.Body.String() || lane.Header().Get("Location") != mux.Header().Get("Location") {
						t.Errorf("%s %s: table %d %q (Location %q), mux %d %q (Location %q)", method, p,
							lane.Code, lane.Body, lane.Header().Get("Location"), mux.Code, mux.Body, mux.Header().Get("Location"))
					}
				}
			}
		})
	}
}

// TestFastLaneKeepsTheGuard: a request the lane serves still passes its
// route's right check.
func TestFastLaneKeepsTheGuard(t *testing.T) {
	for name, run := range map[string]http.Handler{"handler": echo("rest"), "rest handler": restEcho{}} {
		tab := gatewayWith(run)
		tab.Enforce(false)
		w := httptest.NewRecorder()
		tab.ServeHTTP(w, httptest.NewRequest("POST", "/v1/run/sim/predict", nil))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: no key through the lane: %d %s, want 401", name, w.Code, w.Body)
		}
		w = httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/run/sim/predict", nil)
		tab.ServeHTTP(w, req.WithContext(NewContext(req.Context(), &Principal{Scope: ScopeInvoke})))
		if w.Code != http.StatusOK || w.Body.String() != "/v1/run/{rest...} | sim/predict" {
			t.Errorf("%s: with an invoke key through the lane: %d %q", name, w.Code, w.Body)
		}
	}
}

func TestFastCandidate(t *testing.T) {
	for _, tc := range []struct {
		pattern, prefix, wildcard string
		ok                        bool
	}{
		{"/v1/run/{rest...}", "/v1/run/", "rest", true},
		{"/run/{fn...}", "/run/", "fn", true},
		{"POST /v1/run/{rest...}", "", "", false}, // a method
		{"ember.test/v1/run/{rest...}", "", "", false},
		{"/{rest...}", "", "", false},
		{"/v1/{kind}/{rest...}", "", "", false},
		{"/v1/run/{name}", "", "", false},
		{"/v1/run/", "", "", false},
		{"/v1/r%75n/{rest...}", "", "", false},
	} {
		prefix, wildcard, ok := fastCandidate(tc.pattern)
		if prefix != tc.prefix || wildcard != tc.wildcard || ok != tc.ok {
			t.Errorf("fastCandidate(%q) = %q, %q, %v; want %q, %q, %v", tc.pattern, prefix, wildcard, ok, tc.prefix, tc.wildcard, tc.ok)
		}
	}
}

func TestMayOverlap(t *testing.T) {
	for _, tc := range []struct {
		other string
		want  bool
	}{
		{"/", false},
		{"/v1/", false},
		{"GET /v1/functions/{rest...}", false},
		{"POST /v1/models/{owner}/{name}/predictions", false},
		{"GET /ui/{$}", false},
		{"/v1/run", false},
		{"/v1/{$}", false},
		{"POST /v1/run/{rest...}", true},
		{"/v1/run/special", true},
		{"/v1/run/", true},
		{"/v1/{kind}/x", true},
		{"/v1/{kind}/", true},
		{"/{all...}", true},
		{"ember.test/", true},
		{"/v1/r%75n/special", true}, // the mux reads it as /v1/run/special
		{"POST /v1/r%75n/{x}", true},
		{"/%761/run/{x}/y", true},
		{"/v1/f%75nctions/x", true}, // could match nothing under /v1/run/, but escapes are not worth reading
	} {
		if got := mayOverlap(tc.other, "/v1/run/"); got != tc.want {
			t.Errorf("mayOverlap(%q, /v1/run/) = %v, want %v", tc.other, got, tc.want)
		}
	}
}
