// Package routing is Ember's hybrid-routing service: the table of live
// routes (each with its traffic window and standing choice), the calls that
// follow a route's decision to a function or an external URL, with
// fallback, and the pricing of targets for the cost policy. The pure
// decider is internal/route; the gateway mounts this service through the
// small interface it declares, in api types.
package routing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/route"
	"github.com/ember-run/ember/internal/spec"
)

// Store keeps routes across restarts (store/sqlite). specJSON is the
// JSON of a validated, defaulted route.Route.
type Store interface {
	PutRoute(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Route, bool, error)
	DeleteRoute(ctx context.Context, name string) (bool, error)
	ListRoutes(ctx context.Context) ([]api.Route, error)
}

// Observer counts routing decisions and routed calls (telemetry).
type Observer interface {
	// RouteDecision is called for every decision (at most about once a
	// second per route), changed or not; reason is a route.Reason code.
	RouteDecision(route, choice, reason string)
	// RouteRequest is called once per routed call with the pool that
	// answered; fallback is true when the chosen pool was down.
	RouteRequest(route, choice string, fallback bool)
}

// decideEvery bounds how often a route decides again: the window moves in
// one-second buckets, so deciding more often would only cost a lock and
// a metric increment per call.
const decideEvery = time.Second

// maxRouteBody bounds bodies buffered for a routed call. The body is kept
// so that a fallback can send it again; a function target still applies
// its own max_body_bytes.
const maxRouteBody = spec.DefaultMaxBodyBytes

// liveRoute is a route with its traffic window and standing choice.
type liveRoute struct {
	name      string     // fixed for the liveRoute's life
	mu        sync.Mutex // guards the following
	spec      *route.Route
	rec       api.Route
	win       *route.Window
	state     route.State
	reason    route.Reason
	qps       float64
	decidedAt time.Time // zero before the first decision
	// unreported counts calls here not yet taken by Calls (a gateway
	// reports them to the leader, which tells the other gateways).
	unreported int64
}

// pickLocked returns the route's choice at now, deciding again when the
// last decision is older than decideEvery. lr.mu must be held.
func (lr *liveRoute) pickLocked(now time.Time, obs Observer, cost route.CostComparer) (route.Choice, route.Reason) {
	if !lr.decidedAt.IsZero() && now.Sub(lr.decidedAt) < decideEvery {
		return lr.state.Choice, lr.reason
	}
	lr.qps = lr.win.QPS(now)
	c, why := lr.spec.Decide(now, route.Observations{QPS: lr.qps, State: lr.state, Cost: cost})
	lr.state = lr.state.Apply(now, c)
	lr.reason, lr.decidedAt = why, now
	if obs != nil {
		obs.RouteDecision(lr.spec.Name, string(c), why.Code)
	}
	return c, why
}

// call records one call at now and returns the route spec and its choice.
func (lr *liveRoute) call(now time.Time, obs Observer, cost route.CostComparer) (*route.Route, route.Choice, route.Reason) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.win.Record(now, 1)
	lr.unreported++
	c, why := lr.pickLocked(now, obs, cost)
	return lr.spec, c, why
}

// wire is the route as the API shows it, with its live status: what a
// call at now would get. Reading it decides nothing (no caching, no
// metric), so a status poll neither delays nor counts as a decision.
func (lr *liveRoute) wire(now time.Time, cost route.CostComparer) api.Route {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	qps := lr.win.QPS(now)
	c, why := lr.spec.Decide(now, route.Observations{QPS: qps, State: lr.state, Cost: cost})
	rec := lr.rec
	rec.Status = &api.RouteStatus{Choice: string(c), Reason: why.String(), QPS: qps, Since: lr.state.Apply(now, c).Since}
	return rec
}

// routeTable holds the live routes by name.
type routeTable struct {
	// applyMu serialises writes (store, then table) so the table follows
	// the store's order.
	applyMu sync.Mutex
	mu      sync.RWMutex // guards m
	m       map[string]*liveRoute
}

func (t *routeTable) get(name string) *liveRoute {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[name]
}

func (t *routeTable) names() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.m))
	for n := range t.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// put installs rt, keeping the traffic window and standing choice of a
// route of that name (a re-apply must not forget its traffic) unless the
// window length changed.
func (t *routeTable) put(rt *route.Route, rec api.Route, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lr, ok := t.m[rt.Name]; ok {
		lr.mu.Lock()
		if lr.win.Span() != rt.Policy.Window.D() {
			lr.win = route.NewWindow(rt.Policy.Window.D(), now)
		}
		lr.spec, lr.rec, lr.decidedAt = rt, rec, time.Time{}
		lr.mu.Unlock()
		return
	}
	t.m[rt.Name] = &liveRoute{name: rt.Name, spec: rt, rec: rec, win: route.NewWindow(rt.Policy.Window.D(), now)}
}

func (t *routeTable) remove(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, name)
}

// Secrets reads secret values for targets' headers (store/sqlite).
type Secrets interface {
	SecretValue(ctx context.Context, name string) ([]byte, bool, error)
}

// Invoke calls function fn at path and streams its answer to w; it
// returns an error only when nothing was written to w. The gateway passes
// its own invocation (limits, body bounds, the activator) with each call.
type Invoke = func(w http.ResponseWriter, r *http.Request, fn, path string) error

// Options configure a Service. Store is required.
type Options struct {
	Store Store
	// Observer counts decisions and routed calls (nil: none).
	Observer Observer
	// Cost prices targets for routes with the cost policy (nil: they
	// decide by QPS and say cost_unavailable).
	Cost route.CostComparer
	// Secrets fills ${secret:NAME} in targets' headers (nil: none exist).
	Secrets Secrets
	// IsFunction reports whether a function of that name is deployed: a
	// route may not take a function's name.
	IsFunction func(name string) bool
	// LookupEnv fills ${NAME} in targets' headers (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
	Logger    *slog.Logger
	Now       func() time.Time // time.Now when nil
}

// Service holds the live routes and calls their targets.
type Service struct {
	tab       *routeTable
	store     Store
	obs       Observer
	cost      route.CostComparer
	secrets   Secrets
	isFn      func(string) bool
	lookupEnv func(string) (string, bool)
	logger    *slog.Logger
	now       func() time.Time
	urls      *urlProxy
}

// New builds the service and loads the stored routes.
func New(ctx context.Context, opts Options) (*Service, error) {
	s := &Service{tab: &routeTable{m: map[string]*liveRoute{}}, store: opts.Store, obs: opts.Observer,
		cost: opts.Cost, secrets: opts.Secrets, isFn: opts.IsFunction, lookupEnv: opts.LookupEnv,
		logger: opts.Logger, now: opts.Now, urls: newURLProxy()}
	if s.lookupEnv == nil {
		s.lookupEnv = os.LookupEnv
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.isFn == nil {
		s.isFn = func(string) bool { return false }
	}
	recs, err := s.store.ListRoutes(ctx)
	if err != nil {
		return nil, fmt.Errorf("load routes: %w", err)
	}
	now := s.now()
	for _, rec := range recs {
		rt, err := route.Parse(rec.Spec)
		if err != nil {
			s.logger.Warn("skipping a stored route that no longer validates", "route", rec.Name, "err", err)
			continue
		}
		if err := s.checkHeaderEnv(ctx, rt); err != nil {
			// Kept: the variable may be set before the next restart.
			s.logger.Warn("a stored route's headers name unset variables; its calls will send them empty", "route", rec.Name, "err", err)
		}
		s.tab.put(rt, rec, now)
	}
	return s, nil
}

// Close drops idle connections to external route targets.
func (s *Service) Close() { s.urls.close() }

func unknownRoute(name string) error {
	return &errkind.Error{Kind: errkind.NotFound, Code: "unknown_route", Msg: fmt.Sprintf("unknown route %q: apply it first (ember route apply FILE)", name)}
}

// Has reports whether a route is named name.
func (s *Service) Has(name string) bool { return s.tab.get(name) != nil }

// Names lists the routes' names, sorted.
func (s *Service) Names() []string { return s.tab.names() }

// Apply creates or replaces a route from its YAML or JSON spec.
func (s *Service) Apply(ctx context.Context, body []byte) (api.Route, bool, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return api.Route{}, false, errkind.New(errkind.Invalid, "bad_request", "empty route: send the route spec as YAML or JSON")
	}
	rt, err := route.Parse(body)
	if err != nil {
		return api.Route{}, false, errkind.New(errkind.Invalid, "invalid_route", err.Error())
	}
	if err := s.checkHeaderEnv(ctx, rt); err != nil {
		return api.Route{}, false, err
	}
	if s.isFn(rt.Name) {
		return api.Route{}, false, errkind.New(errkind.Conflict, "name_conflict",
			fmt.Sprintf("a function is named %q; a route needs a name of its own", rt.Name))
	}
	specJSON, err := json.Marshal(rt)
	if err != nil {
		return api.Route{}, false, err
	}
	s.tab.applyMu.Lock()
	defer s.tab.applyMu.Unlock()
	now := s.now()
	rec, created, err := s.store.PutRoute(ctx, rt.Name, specJSON, now)
	if err != nil {
		return api.Route{}, false, err
	}
	s.tab.put(rt, rec, now)
	s.logger.Info("route applied", "route", rt.Name, "persistent", rt.Targets.Persistent.String(),
		"serverless", rt.Targets.Serverless.String(), "policy", rt.Policy.Type, "version", rec.Version)
	return s.tab.get(rt.Name).wire(now, s.cost), created, nil
}

// List is every route with its current choice, by name.
func (s *Service) List() []api.Route {
	out := []api.Route{}
	now := s.now()
	for _, n := range s.tab.names() {
		if lr := s.tab.get(n); lr != nil {
			out = append(out, lr.wire(now, s.cost))
		}
	}
	return out
}

// Get is one route with its current choice.
func (s *Service) Get(name string) (api.Route, error) {
	lr := s.tab.get(name)
	if lr == nil {
		return api.Route{}, unknownRoute(name)
	}
	return lr.wire(s.now(), s.cost), nil
}

// Delete removes a route.
func (s *Service) Delete(ctx context.Context, name string) error {
	s.tab.applyMu.Lock()
	defer s.tab.applyMu.Unlock()
	existed, err := s.store.DeleteRoute(ctx, name)
	if err != nil {
		return err
	}
	if !existed {
		return unknownRoute(name)
	}
	s.tab.remove(name)
	s.logger.Info("route removed", "route", name)
	return nil
}

// Calls returns each route's calls since the previous Calls (routes
// without any are left out). A gateway reports them to the leader.
func (s *Service) Calls() map[string]int64 {
	out := map[string]int64{}
	for _, n := range s.tab.names() {
		lr := s.tab.get(n)
		if lr == nil {
			continue
		}
		lr.mu.Lock()
		if lr.unreported > 0 {
			out[n] = lr.unreported
			lr.unreported = 0
		}
		lr.mu.Unlock()
	}
	return out
}

// Record counts calls made through other gateways (as the leader tells
// them) in the routes' windows now, so each route decides on the traffic
// of every gateway: its threshold is crossed at the same total whatever
// the number of gateways. Unknown routes and counts ≤ 0 are ignored.
func (s *Service) Record(calls map[string]int64) {
	now := s.now()
	for name, n := range calls {
		if lr := s.tab.get(name); lr != nil && n > 0 {
			lr.mu.Lock()
			lr.win.Record(now, int(min(n, math.MaxInt32)))
			lr.mu.Unlock()
		}
	}
}

// Split finds the route named by the leading one or two segments of rest
// (names may be owner/name) and returns its name and the rest of the path.
func (s *Service) Split(rest string) (name, path string, ok bool) {
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) >= 2 {
		if n := parts[0] + "/" + parts[1]; s.Has(n) {
			if len(parts) == 3 {
				return n, "/" + parts[2], true
			}
			return n, "/", true
		}
	}
	if s.Has(parts[0]) {
		p := strings.TrimPrefix(rest, parts[0])
		if p == "" {
			p = "/"
		}
		return parts[0], p, true
	}
	return "", "", false
}

// Call sends a call for route name, at path, to the target its policy
// chooses, and to the other target if the chosen one is down; invoke
// calls a function target. Like invoke, it returns an error only when
// nothing was written to w. The caller has checked that the caller's key
// covers the route; the targets are the route's business (a key for
// "llama" need not name "llama-big").
func (s *Service) Call(w http.ResponseWriter, r *http.Request, name, path string, invoke Invoke) error {
	lr := s.tab.get(name)
	if lr == nil {
		return unknownRoute(name)
	}
	rt, choice, why := lr.call(s.now(), s.obs, s.cost)
	if err := bufferBody(w, r, maxRouteBody); err != nil {
		return err
	}
	h := w.Header()
	h.Set(api.HeaderRoute, string(choice))
	h.Set(api.HeaderRouteReason, why.Code)
	err := s.callTarget(w, r, rt, choice, path, invoke)
	if err == nil || !targetDown(err) {
		s.observeRoute(rt.Name, choice, false)
		return err
	}
	other := choice.Other()
	s.logger.Warn("route target down; falling back", "route", rt.Name, "chosen", choice, "target", rt.Target(choice).String(), "err", err)
	h.Set(api.HeaderRoute, string(other))
	h.Set(api.HeaderRouteFallback, oneLine(fmt.Sprintf("%s unavailable: %v", choice, err)))
	if r.GetBody != nil {
		if r.Body, err = r.GetBody(); err != nil {
			return err
		}
	}
	s.observeRoute(rt.Name, other, true)
	return s.callTarget(w, r, rt, other, path, invoke)
}

func (s *Service) observeRoute(name string, c route.Choice, fallback bool) {
	if s.obs != nil {
		s.obs.RouteRequest(name, string(c), fallback)
	}
}

// callTarget calls one target of a route: a function with its own
// timeout; a URL whose answer must start within the route's timeout (a
// stream that has started runs as long as it lasts).
func (s *Service) callTarget(w http.ResponseWriter, r *http.Request, rt *route.Route, c route.Choice, path string, invoke Invoke) error {
	t := rt.Target(c)
	if t.Function != "" {
		return invoke(w, r, t.Function, path)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	fw := &firstByteWriter{ResponseWriter: w}
	var late atomic.Bool
	timer := time.AfterFunc(rt.Timeout.D(), func() {
		if !fw.started.Load() {
			late.Store(true)
			cancel()
		}
	})
	defer timer.Stop()
	headers, err := s.targetHeaders(ctx, rt, t)
	if err != nil {
		return err
	}
	err = s.urls.forward(fw, r.WithContext(ctx), t.URL, path, headers)
	if err != nil && late.Load() && r.Context().Err() == nil {
		return &errkind.Error{Kind: errkind.Timeout, Code: "timeout",
			Msg: fmt.Sprintf("route %q: %s did not answer within the route's timeout %s", rt.Name, t.URL, rt.Timeout.D()), Err: err}
	}
	return err
}

// firstByteWriter notes when a response starts.
type firstByteWriter struct {
	http.ResponseWriter
	started atomic.Bool
}

func (f *firstByteWriter) WriteHeader(code int) {
	f.started.Store(true)
	f.ResponseWriter.WriteHeader(code)
}

func (f *firstByteWriter) Write(b []byte) (int, error) {
	f.started.Store(true)
	return f.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (f *firstByteWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// Flush flushes the underlying writer (streaming responses).
func (f *firstByteWriter) Flush() {
	if fl, ok := f.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// secretRef is the prefix of a header reference to a secret:
// ${secret:hf-token}. Other ${NAME} references read the server's
// environment.
const secretRef = "secret:"

// targetHeaders expands ${NAME} in t's headers from the server's
// environment and ${secret:NAME} from the secret store, at call time. A
// secret removed since the route was applied fails the call (a credential
// sent empty would fail far from its cause); the error names the secret,
// never a value.
func (s *Service) targetHeaders(ctx context.Context, rt *route.Route, t route.Target) (map[string]string, error) {
	if len(t.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(t.Headers))
	var err error
	for k, v := range t.Headers {
		out[k] = expandBraced(v, func(name string) string {
			if sec, ok := strings.CutPrefix(name, secretRef); ok {
				val, found, lerr := s.secretValue(ctx, sec)
				if lerr == nil && !found {
					lerr = &errkind.Error{Kind: errkind.Upstream, Code: "unknown_secret",
						Msg: fmt.Sprintf("route %q: header %s names secret %q, which no longer exists (ember secrets set %s)", rt.Name, k, sec, sec)}
				}
				if err == nil {
					err = lerr
				}
				return string(val)
			}
			val, _ := s.lookupEnv(name)
			return val
		})
	}
	return out, err
}

// secretValue reads a secret, or reports it missing when secrets are off.
func (s *Service) secretValue(ctx context.Context, name string) ([]byte, bool, error) {
	if s.secrets == nil {
		return nil, false, nil
	}
	return s.secrets.SecretValue(ctx, name)
}

// expandBraced replaces each ${NAME} in s with get(NAME). Unlike
// os.Expand it leaves a bare $ alone, so a header value can hold one.
func expandBraced(s string, get func(string) string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+2:], '}')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteString(get(s[i+2 : i+2+j]))
		s = s[i+2+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

// checkHeaderEnv refuses a route whose headers name a variable the
// server's environment lacks, or a secret that does not exist: the call
// would otherwise go out with an empty credential and fail far from its
// cause.
func (s *Service) checkHeaderEnv(ctx context.Context, rt *route.Route) error {
	var errs []string
	for _, tt := range []struct {
		field string
		t     route.Target
	}{{"targets.persistent", rt.Targets.Persistent}, {"targets.serverless", rt.Targets.Serverless}} {
		for _, name := range slices.Sorted(maps.Keys(tt.t.Headers)) {
			expandBraced(tt.t.Headers[name], func(v string) string {
				if sec, ok := strings.CutPrefix(v, secretRef); ok {
					switch _, found, err := s.secretValue(ctx, sec); {
					case err != nil:
						errs = append(errs, fmt.Sprintf("%s.headers.%s: ${%s}: %v", tt.field, name, v, err))
					case !found:
						errs = append(errs, fmt.Sprintf("%s.headers.%s: ${%s}: secret %q does not exist (create it with: ember secrets set %s)", tt.field, name, v, sec, sec))
					}
					return ""
				}
				if _, ok := s.lookupEnv(v); !ok {
					errs = append(errs, fmt.Sprintf("%s.headers.%s: ${%s} is not set in the server's environment", tt.field, name, v))
				}
				return ""
			})
		}
	}
	if len(errs) > 0 {
		return &errkind.Error{Kind: errkind.Invalid, Code: "invalid_route",
			Msg: fmt.Sprintf("route %q: %s", rt.Name, strings.Join(errs, "; "))}
	}
	return nil
}

// targetDown reports whether err says a target could not take the call at
// all (nothing was sent to it), so the other target may have it: its
// instance could not start, the function is unknown or could not be
// prepared, or the connection could not be made.
func targetDown(err error) bool {
	var ue *proxy.UpstreamError
	var k errkind.Kinded
	switch {
	case errors.As(err, &ue):
		return ue.Dial
	case errors.As(err, &k):
		switch k.ErrorCode() {
		case "start_failed", "unknown_function", "prepare_failed":
			return true
		}
	}
	return false
}

// bufferBody reads r's body (up to limit) so it can be sent again, unless
// it already can be.
func bufferBody(w http.ResponseWriter, r *http.Request, limit int64) error {
	if r.GetBody != nil || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if r.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// oneLine makes s fit a header value.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
