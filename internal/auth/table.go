package auth

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
)

// Right is what a caller needs to reach a route. Every route of the server
// is registered with one (Table.Register), so a route without a right
// cannot exist.
type Right string

const (
	// RightPublic needs no key (load-balancer and Kubernetes probes).
	RightPublic Right = "public"
	// RightMetrics needs an admin key or a metrics-scope key, unless the
	// server opened metrics (--open-metrics).
	RightMetrics Right = "metrics"
	// RightInvoke needs an invoke (or admin) key; the handler checks that
	// the key covers the function named in the path or body, and that a
	// prediction is the caller's own.
	RightInvoke Right = "invoke"
	// RightAdmin needs an admin key.
	RightAdmin Right = "admin"
	// RightCapability needs no key: the handler checks a signed, expiring
	// token for one object carried in the URL.
	RightCapability Right = "capability"
	// RightSession needs no key on the request: the handler (the /ui
	// dashboard) checks a session cookie opened with a key, and re-checks
	// that key on every request.
	RightSession Right = "session"
	// RightCluster needs the cluster token (--cluster-token-file or
	// EMBER_CLUSTER_TOKEN): node-to-node calls under /internal/v1/, e.g. a
	// gateway's reports to the controller leader. The Cluster guard in
	// front marks the request; no API key passes, admin ones included,
	// and the check holds even on a server with --auth=false.
	RightCluster Right = "cluster"
)

func (r Right) valid() bool {
	switch r {
	case RightPublic, RightMetrics, RightInvoke, RightAdmin, RightCapability, RightSession, RightCluster:
		return true
	}
	return false
}

// Route is one row of the authorization table.
type Route struct {
	Pattern string // a net/http.ServeMux pattern
	Right   Right
	Fast    bool // found by prefix, without the mux's tree walk (fastlane.go)
}

// Table is the server's router and its authorization table in one: a
// handler reaches the mux only through Register, wrapped in the check of
// its right. The Authenticator's middleware in front identifies the caller;
// the Table decides per route.
type Table struct {
	mux      *http.ServeMux
	rows     []Route
	handlers map[string]http.Handler // by pattern, guarded: for the fast lane
	rest     map[string]RestHandler  // by pattern, unguarded: those that take a wildcard's value
	fast     []fastRoute             // fastlane.go
	deny     func(w http.ResponseWriter, r *http.Request, err error)
	// Set by Enforce before serving; read-only afterwards.
	enforce     bool
	openMetrics bool
}

// NewTable returns an empty table that lets every request through until
// Enforce is called (a server without authentication). deny renders a
// refusal (an *Error); WriteError when nil.
func NewTable(deny func(w http.ResponseWriter, r *http.Request, err error)) *Table {
	if deny == nil {
		deny = func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, err) }
	}
	return &Table{mux: http.NewServeMux(), deny: deny, handlers: map[string]http.Handler{}, rest: map[string]RestHandler{}}
}

// Enforce turns the checks on; openMetrics makes RightMetrics routes
// public. Call it before serving.
func (t *Table) Enforce(openMetrics bool) {
	t.enforce, t.openMetrics = true, openMetrics
}

// Register mounts h on pattern behind the check of right, and records the
// row. It panics on an unknown right, as ServeMux does on a bad pattern:
// both are programming errors found at start-up, never at request time.
func (t *Table) Register(pattern string, right Right, h http.Handler) {
	if !right.valid() {
		panic(fmt.Sprintf("auth: route %q registered with unknown right %q", pattern, right))
	}
	g := t.guard(right, h)
	t.mux.Handle(pattern, g)
	t.rows = append(t.rows, Route{Pattern: pattern, Right: right})
	t.handlers[pattern] = g
	if rh, ok := h.(RestHandler); ok {
		t.rest[pattern] = rh
	}
	t.rebuildFast()
}

// Routes returns the table's rows sorted by pattern.
func (t *Table) Routes() []Route {
	out := slices.Clone(t.rows)
	fast := t.FastRoutes()
	for i := range out {
		out[i].Fast = slices.Contains(fast, out[i].Pattern)
	}
	slices.SortFunc(out, func(a, b Route) int { return cmp.Compare(a.Pattern, b.Pattern) })
	return out
}

// ServeHTTP routes r to its handler, through the handler's check.
func (t *Table) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t.fastServe(w, r) {
		return
	}
	t.mux.ServeHTTP(w, r)
}

func (t *Table) guard(right Right, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.allow(r.Context(), right); err != nil {
			t.deny(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allow decides whether the caller may reach a route needing right: nil,
// or an *Error (401 without a key, 403 with one of the wrong scope).
func (t *Table) allow(ctx context.Context, right Right) error {
	p := FromContext(ctx)
	if right == RightCluster {
		// Checked with or without Enforce: a server without API keys
		// still keeps its internal routes to its own nodes.
		switch {
		case IsCluster(ctx):
			return nil
		case p != nil:
			return ErrAPIKeyOnClusterRoute
		}
		return ErrMissingClusterToken
	}
	if !t.enforce {
		return nil
	}
	switch right {
	case RightPublic, RightCapability, RightSession, RightCluster:
		return nil
	case RightMetrics:
		if t.openMetrics {
			return nil
		}
		return checkScope(p, ScopeMetrics)
	case RightInvoke:
		return checkScope(p, ScopeInvoke)
	case RightAdmin:
		return checkScope(p, ScopeAdmin)
	}
	return fmt.Errorf("auth: unknown right %q", right) // unreachable: Register checks
}
