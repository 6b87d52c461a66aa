// Package gateway is Ember's public HTTP API: function management, status,
// and invocation through the activator to an instance.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/gateway/openai"
	"github.com/ember-run/ember/internal/problem"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/ratelimit"
	"github.com/ember-run/ember/internal/spec"
)

// Invoker runs a callback on an instance slot (activator).
type Invoker interface {
	Try(ctx context.Context, fn string, f func(activator.Slot) error) error
	// TryNow is Try when a slot is free now; false: nothing was done.
	TryNow(fn string, f func(activator.Slot) error) (bool, error)
	Queued(fn string) int
}

// Registry manages deployed functions (controller).
type Registry interface {
	Deploy(ctx context.Context, f *spec.Function) (api.Function, bool, error)
	Delete(ctx context.Context, name string) error
	// Get is name's record, its status carrying the last scaling
	// decision (desired, panic, reason).
	Get(name string) (api.Function, bool)
	List() []api.Function
}

// Instances answers questions about running instances (instance manager).
type Instances interface {
	Function(name string) (*spec.Function, bool)
	Instances(fn string) ([]api.Instance, bool)
	Instance(id string) (api.Instance, bool)
	// Status is fn's instance counts, in-flight requests, cold starts and
	// last error at now.
	Status(fn string, now time.Time) (api.FunctionStatus, bool)
	Exited(id string, wait time.Duration) (error, bool)
	Logs(fn string, tail int) ([]api.LogLine, error)
	// Rollout is how far fn's current version is from ready.
	Rollout(fn string) (api.Rollout, bool)
	// Prove starts one instance of fn's version if none of it is ready or
	// starting (a deploy that waits, at min 0).
	Prove(fn string, version int64)
}

// Forwarder proxies a request to an instance (proxy).
type Forwarder interface {
	// ForwardUntil ends the exchange at deadline with
	// context.DeadlineExceeded.
	ForwardUntil(w http.ResponseWriter, r *http.Request, addr, path string, deadline time.Time) error
}

// Observer records request metrics.
type Observer interface {
	Request(fn string, status int, d, queue time.Duration, cold bool)
}

// Coster prices a call's time on an instance for the Ember-Cost-USD
// header (metering.Meter); ok is false for an instance it does not know.
type Coster interface {
	RequestCostByInstance(id string, service time.Duration) (usd float64, ok bool)
}

// Routes is the hybrid-routing service (internal/routing) as the gateway
// mounts it: route management, and calls to a route's chosen target.
type Routes interface {
	Apply(ctx context.Context, spec []byte) (rec api.Route, created bool, err error)
	List() []api.Route
	Get(name string) (api.Route, error)
	Delete(ctx context.Context, name string) error
	Has(name string) bool
	Names() []string
	// Split finds the route named at the start of rest (names may be
	// owner/name) and returns the remainder of the path.
	Split(rest string) (name, path string, ok bool)
	// Call sends r to the target route name chooses; invoke calls a
	// function target. It returns an error only when nothing was written.
	Call(w http.ResponseWriter, r *http.Request, name, path string, invoke func(w http.ResponseWriter, r *http.Request, fn, path string) error) error
}

// InputSchemas knows the input schema functions declare (the container
// driver, for protocol cog).
type InputSchemas interface {
	InputSchema(fn string) (json.RawMessage, bool)
}

// Budgets reports functions' spend today against their budgets (metering).
type Budgets interface {
	Budget(fn string, now time.Time) *api.BudgetStatus
}

// Gateway is the HTTP API.
type Gateway struct {
	inv       Invoker
	reg       Registry
	instances Instances
	fwd       Forwarder
	obs       Observer
	costs     Coster
	logger    *slog.Logger
	now       func() time.Time
	ready     atomic.Bool
	// authOn makes handlers check the caller's key scope (the
	// authenticator middleware in front has already identified it).
	authOn  bool
	limiter *ratelimit.Limiter
	budgets Budgets
	inputs  InputSchemas
	// versions serves GET /v1/functions/{name}/versions (nil: not found).
	versions FunctionVersions
	// table is the router: every route is registered with its right.
	table *auth.Table
	// routes is the hybrid-routing service; nil: routes are disabled.
	routes Routes
	// secrets serves /v1/secrets (secrets.go); nil: disabled.
	secrets *secrets
	// bodies bound request bodies on the way to instances (body.go);
	// budget counts the bytes of bodies read before a slot.
	bodies BodyLimits
	budget *byteBudget
	// maxPerFunction refuses specs asking for more instances (0 = none).
	maxPerFunction int
}

// Options are everything the Gateway is built from. Invoker, Registry,
// Instances, Forwarder and Logger are required.
type Options struct {
	Invoker   Invoker
	Registry  Registry
	Instances Instances
	Forwarder Forwarder
	// Observer records each invocation (nil: none).
	Observer Observer
	// Costs prices each call for its Ember-Cost-USD header (nil: no
	// header).
	Costs Coster
	// Routes serves hybrid routes (nil: the route API answers
	// routes_disabled).
	Routes Routes
	// Secrets turns on /v1/secrets and secret references in specs (nil:
	// secrets_disabled).
	Secrets SecretStore
	// Budgets lets function status show today's spend (nil: not shown).
	Budgets Budgets
	// MaxPerFunction refuses specs asking for more instances (0: none).
	MaxPerFunction int
	// Inputs adds functions' input schemas to GET /v1/functions/{name}
	// (nil: none shown).
	Inputs InputSchemas
	// Versions serves the deploy history, GET /v1/functions/{name}/versions
	// (nil: that route answers not_found).
	Versions FunctionVersions
	// Bodies bound request bodies (DefaultBodyLimits when zero).
	Bodies BodyLimits
	// Auth makes every route check the caller's key against its right,
	// and invocations check that the key covers the function;
	// OpenMetrics then serves /metrics without a key.
	Auth, OpenMetrics bool
	Logger            *slog.Logger
}

// FunctionVersions reads a function's deploy history, newest first.
type FunctionVersions interface {
	FunctionVersions(ctx context.Context, name string, limit int) ([]api.FunctionVersion, error)
}

// New builds the gateway.
func New(opts Options) *Gateway {
	g := &Gateway{inv: opts.Invoker, reg: opts.Registry, instances: opts.Instances, fwd: opts.Forwarder,
		obs: opts.Observer, costs: opts.Costs, routes: opts.Routes, budgets: opts.Budgets, inputs: opts.Inputs, versions: opts.Versions, maxPerFunction: opts.MaxPerFunction,
		logger: opts.Logger, now: time.Now, limiter: ratelimit.New()}
	if opts.Secrets != nil {
		g.secrets = &secrets{store: opts.Secrets, now: g.now}
	}
	g.table = auth.NewTable(func(w http.ResponseWriter, r *http.Request, err error) { g.writeError(w, r, err) })
	bodies := opts.Bodies
	if bodies == (BodyLimits{}) {
		bodies = DefaultBodyLimits()
	}
	g.bodies, g.budget = bodies, &byteBudget{max: bodies.Budget}
	if opts.Auth {
		g.authOn = true
		g.table.Enforce(opts.OpenMetrics)
	}
	g.ready.Store(true)
	g.register()
	return g
}

// Register mounts a handler (metrics, jobs, keys, ...) on the gateway's
// router behind the check of right; it is the only way onto the router.
func (g *Gateway) Register(pattern string, right auth.Right, h http.Handler) {
	g.table.Register(pattern, right, h)
}

// Routes is the authorization table: every route with its right.
func (g *Gateway) Routes() []auth.Route { return g.table.Routes() }

// Limiter is the gateway's rate limiter, shared with per-key middleware.
func (g *Gateway) Limiter() *ratelimit.Limiter { return g.limiter }

// allowKey checks that the caller's key covers fn (a function or route).
func (g *Gateway) allowKey(r *http.Request, fn string) error {
	if !g.authOn {
		return nil
	}
	return auth.AllowFunction(auth.FromContext(r.Context()), fn)
}

// mayInvokeAny reports whether the caller's key covers any of names; with
// auth off, everyone may.
func (g *Gateway) mayInvokeAny(r *http.Request, names ...string) bool {
	if !g.authOn {
		return true
	}
	p := auth.FromContext(r.Context())
	for _, n := range names {
		if p.MayInvoke(n) {
			return true
		}
	}
	return false
}

// limitFunction applies fn's own rate limit (spec rate_limit), whoever
// calls: a key, or a route that chose fn.
func (g *Gateway) limitFunction(fn string) (release func(), err error) {
	f, ok := g.instances.Function(fn)
	if !ok || f.RateLimit == nil {
		return func() {}, nil
	}
	rate, _ := f.RateLimit.PerSecond() // validated at deploy
	d, release := g.limiter.Acquire(g.now(), ratelimit.Spec{Kind: ratelimit.KindFunction, Key: fn, Name: fn,
		Limit: ratelimit.Limit{Rate: rate, Burst: f.RateLimit.Burst, MaxConcurrency: f.RateLimit.MaxConcurrency}})
	if err := d.Err(); err != nil {
		return nil, err
	}
	return release, nil
}

// SetReady flips readiness (fails /readyz during drain).
func (g *Gateway) SetReady(ok bool) { g.ready.Store(ok) }

// ServeHTTP serves the API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.table.ServeHTTP(w, r) }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (g *Gateway) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			g.writeError(w, r, err)
		}
	})
}

// register registers the gateway's own routes. Invoke routes check the
// function (path or body) against the key in the handler; list answers
// show only what the key covers. GET /v1/functions stays admin: function
// records carry specs (env included).
func (g *Gateway) register() {
	m := g.table
	m.Register("GET /healthz", auth.RightPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	m.Register("GET /readyz", auth.RightPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}))
	m.Register("POST /v1/functions", auth.RightAdmin, g.wrap(g.deploy))
	m.Register("GET /v1/functions", auth.RightAdmin, g.wrap(g.list))
	m.Register("GET /v1/functions/{rest...}", auth.RightAdmin, g.wrap(g.getFunction))
	m.Register("DELETE /v1/functions/{rest...}", auth.RightAdmin, g.wrap(g.deleteFunction))
	m.Register("/v1/run/{rest...}", auth.RightInvoke, runHandler{g})
	// Hybrid routes (internal/routing, mounted in routes.go) and the
	// OpenAI-compatible endpoints (models.go).
	m.Register("POST /v1/routes", auth.RightAdmin, g.wrap(g.applyRoute))
	m.Register("GET /v1/routes", auth.RightAdmin, g.wrap(g.listRoutes))
	m.Register("GET /v1/routes/{name...}", auth.RightAdmin, g.wrap(g.getRoute))
	m.Register("DELETE /v1/routes/{name...}", auth.RightAdmin, g.wrap(g.deleteRoute))
	// Secrets (secrets.go): admin only; no answer holds a value.
	m.Register("PUT /v1/secrets/{name}", auth.RightAdmin, g.wrap(g.putSecret))
	m.Register("GET /v1/secrets", auth.RightAdmin, g.wrap(g.listSecrets))
	m.Register("DELETE /v1/secrets/{name}", auth.RightAdmin, g.wrap(g.deleteSecret))
	oai := g.newOpenAI()
	for _, p := range openai.Patterns() {
		m.Register(p, auth.RightInvoke, oai)
	}
	// Unknown paths: 404 in Ember's shape, to anyone.
	m.Register("/", auth.RightPublic, g.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &errkind.Error{Kind: errkind.NotFound, Code: "not_found", Msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)}
	}))
}

func (g *Gateway) deploy(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return badRequest("empty spec: send the function spec as YAML or JSON", nil)
	}
	wait := false
	if v := r.URL.Query().Get("wait"); v != "" {
		if wait, err = strconv.ParseBool(v); err != nil {
			return badRequest(fmt.Sprintf("wait: want true or false, got %q", v), nil)
		}
	}
	f, err := spec.Parse(body)
	if err != nil {
		var ve *spec.ValidationError
		if errors.As(err, &ve) {
			return err
		}
		return badRequest(err.Error(), nil)
	}
	if err := g.checkInstanceLimit(f); err != nil {
		return err
	}
	if err := g.checkSpecSecrets(r.Context(), f); err != nil {
		return err
	}
	if g.routes != nil && g.routes.Has(f.Name) {
		return &errkind.Error{Kind: errkind.Conflict, Code: "name_conflict",
			Msg: fmt.Sprintf("a route is named %q; a function needs a name of its own (ember route rm %s first)", f.Name, f.Name)}
	}
	rec, created, err := g.reg.Deploy(r.Context(), f)
	if err != nil {
		return err
	}
	if wait {
		// The caller will watch the rollout (GET .../rollout): make sure
		// an instance of this version starts, even at min 0.
		g.instances.Prove(rec.Name, rec.Version)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.DeployResult{Function: g.withStatus(rec), Created: created})
	return nil
}

func (g *Gateway) list(w http.ResponseWriter, r *http.Request) error {
	fns := g.reg.List()
	for i := range fns {
		fns[i] = g.withStatus(fns[i])
	}
	writeJSON(w, http.StatusOK, fns)
	return nil
}

// splitFunction finds the deployed function named by the leading one or
// two segments of rest (names may be owner/name) and returns the remainder.
func (g *Gateway) splitFunction(rest string) (name, remainder string, ok bool) {
	return splitFunction(rest, func(fn string) bool { _, ok := g.instances.Function(fn); return ok })
}

// splitFunction splits rest into a function that deployed says exists
// (owner/name first, then a bare name) and the path after it. It slices
// rest rather than splitting and joining: this runs on every call.
func splitFunction(rest string, deployed func(string) bool) (name, remainder string, ok bool) {
	if two := firstTwo(rest); strings.Contains(two, "/") && deployed(two) {
		return two, rest[len(two):], true
	}
	owner, _, _ := strings.Cut(rest, "/")
	if deployed(owner) {
		return owner, rest[len(owner):], true
	}
	return owner, "", false
}

// firstTwo is the owner/name candidate at the start of rest: up to its
// second slash (or all of it).
func firstTwo(rest string) string {
	owner, after, ok := strings.Cut(rest, "/")
	if !ok {
		return owner
	}
	name, _, _ := strings.Cut(after, "/")
	return rest[:len(owner)+1+len(name)]
}

func unknown(name string) error {
	return &errkind.Error{Kind: errkind.NotFound, Code: "unknown_function", Msg: fmt.Sprintf("unknown function %q: deploy it first (ember deploy FILE)", name)}
}

func (g *Gateway) getFunction(w http.ResponseWriter, r *http.Request) error {
	name, sub, ok := g.splitFunction(r.PathValue("rest"))
	if !ok {
		return unknown(name)
	}
	switch sub {
	case "", "/":
		rec, ok := g.reg.Get(name)
		if !ok {
			return unknown(name)
		}
		rec = g.withStatus(rec)
		if g.inputs != nil {
			rec.InputSchema, _ = g.inputs.InputSchema(name)
		}
		writeJSON(w, http.StatusOK, rec)
	case "/instances":
		ins, _ := g.instances.Instances(name)
		writeJSON(w, http.StatusOK, ins)
	case "/rollout":
		ro, ok := g.instances.Rollout(name)
		if !ok {
			return unknown(name)
		}
		writeJSON(w, http.StatusOK, ro)
	case "/versions":
		// Admin, as the function record: specs carry env.
		if g.versions == nil {
			return unknown(name)
		}
		vs, err := g.versions.FunctionVersions(r.Context(), name, api.FunctionVersionsKept)
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			if _, ok := g.reg.Get(name); !ok {
				return unknown(name)
			}
			vs = []api.FunctionVersion{}
		}
		writeJSON(w, http.StatusOK, vs)
	case "/logs":
		tail := 100
		if v := r.URL.Query().Get("tail"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return badRequest(fmt.Sprintf("tail: want a non-negative integer, got %q", v), nil)
			}
			tail = n
		}
		lines, err := g.instances.Logs(name, tail)
		if err != nil {
			return err
		}
		if lines == nil {
			lines = []api.LogLine{}
		}
		writeJSON(w, http.StatusOK, lines)
	default:
		return &errkind.Error{Kind: errkind.NotFound, Code: "not_found", Msg: fmt.Sprintf("no route for GET /v1/functions/%s%s", name, sub)}
	}
	return nil
}

func (g *Gateway) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rest")
	if err := g.reg.Delete(r.Context(), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) withStatus(rec api.Function) api.Function {
	now := g.now()
	var st api.FunctionStatus
	if s, ok := g.instances.Status(rec.Name, now); ok {
		st = s
	}
	st.Queued = g.inv.Queued(rec.Name)
	if f, ok := g.instances.Function(rec.Name); ok && f.Budget != nil && g.budgets != nil {
		st.Budget = g.budgets.Budget(rec.Name, now)
	}
	if cur, ok := g.reg.Get(rec.Name); ok {
		st.Desired, st.Panic, st.Reason = cur.Status.Desired, cur.Status.Panic, cur.Status.Reason
		st.KeepWarm = cur.Status.KeepWarm
	}
	rec.Status = st
	return rec
}

// runHandler serves /v1/run/{rest...}. The table's fast lane hands it
// rest as an argument (auth.RestHandler); the mux, as a path value.
type runHandler struct{ g *Gateway }

func (h runHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.g.run(w, r, r.PathValue("rest"))
}

func (h runHandler) ServeRest(w http.ResponseWriter, r *http.Request, rest string) {
	h.g.run(w, r, rest)
}

// run forwards any method on /v1/run/{name}/{path...} (rest is
// {name}/{path...}) to an instance, or, when name is a route, to the
// target the route chooses.
func (g *Gateway) run(w http.ResponseWriter, r *http.Request, rest string) {
	name, path, ok := g.splitFunction(rest)
	var err error
	switch {
	case ok:
		err = g.invoke(w, r, name, path, true)
	default:
		if rname, rpath, found := g.splitRoute(rest); found {
			err = g.callRoute(w, r, rname, rpath)
		} else if err = g.allowKey(r, name); err == nil || g.mayInvokeAny(r, firstTwo(rest)) {
			// A key hears "unknown" only for names it covers; for others
			// the same 403 whether the function exists or not.
			err = unknown(name)
		}
	}
	if err != nil {
		g.writeError(w, r, err)
	}
}

// invoke calls function name at path through the activator and streams the
// answer to w. It returns an error only when nothing was written to w, so
// the caller may render it or try another target. checkKey says whether the
// caller's key must cover name (false when a route the key covers chose
// it); the function's own rate limit applies either way.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, name, path string, checkKey bool) (err error) {
	// A call counts as name's request only once it is authorised: refused
	// calls stay out of name's metrics and usage, so no key can inflate
	// another function's numbers.
	if checkKey {
		if err := g.allowKey(r, name); err != nil {
			return err
		}
	}
	start := g.now()
	status := 0
	// sw.slot is the slot served from, once there is one. (Kept there
	// rather than in a variable that forward below assigns: that variable
	// would move to the heap, one allocation per call.)
	sw := &statusWriter{ResponseWriter: w, costs: g.costs, now: g.now, start: start}
	defer func() {
		if g.obs == nil {
			return
		}
		if err != nil {
			status = problem.Classify(err, g.now()).Status
		}
		g.obs.Request(name, status, g.now().Sub(start), sw.slot.Queue, sw.slot.Cold)
	}()
	release, err := g.limitFunction(name)
	if err != nil {
		return err
	}
	defer release()
	f, ok := g.instances.Function(name)
	if !ok {
		return unknown(name)
	}
	if path == "" {
		path = "/"
	}
	// The body is bounded and, when small, read before a slot is taken, so
	// a slow sender holds no instance slot.
	body, held, err := g.prepareBody(w, r, f.MaxBodyBytes)
	if err != nil {
		return err
	}
	if held > 0 {
		defer g.budget.give(held)
	}
	// The function's timeout bounds the wait for a slot and the exchange
	// with the instance. A call that finds a free slot (TryNow) needs no
	// timer context: the forwarder sets the deadline on its connection.
	deadline := g.now().Add(f.Timeout.D())
	forward := func(s activator.Slot) error {
		sw.slot = s
		setSlotHeaders(w.Header(), s, g.serverTiming)
		return g.fwd.ForwardUntil(sw, r, s.Addr, path, deadline)
	}
	done, err := g.inv.TryNow(name, forward)
	if !done {
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		defer cancel()
		err = g.inv.Try(ctx, name, forward)
	}
	if err == nil || sw.status != 0 {
		// Done, or headers already went out and the stream was cut:
		// nothing more to say.
		status = sw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		return nil
	}
	w.Header().Del(api.HeaderServerTiming)
	if sw.slot.Instance != "" {
		// The instance's time was spent: the error response says what
		// it cost, as a success would have.
		sw.setCost()
	}
	if body != nil {
		// A streamed body that broke off (too large, too slow) aborted the
		// instance's request: say why, not what the proxy saw.
		if berr := body.failure(g.bodies); berr != nil {
			return berr
		}
	}
	var ue *proxy.UpstreamError
	if errors.As(err, &ue) && sw.slot.Instance != "" {
		// Say why the instance failed when it died under us.
		if exitErr, dead := g.instances.Exited(sw.slot.Instance, 250*time.Millisecond); dead {
			err = &errkind.Error{Kind: errkind.Upstream, Code: "instance_exited",
				Msg: fmt.Sprintf("instance %s exited mid-request: %v; the next request starts a fresh instance", sw.slot.Instance, exitErr), Err: err}
		}
	}
	return err
}

// formatQueueMs is the Ember-Queue-Ms value: milliseconds, three
// decimals. A call that found a free slot waited under a microsecond,
// and gets a constant (this runs on every request).
func formatQueueMs(q time.Duration) string {
	us := q.Microseconds()
	if us == 0 {
		return zeroQueueMs
	}
	var b [24]byte
	return string(strconv.AppendFloat(b[:0], float64(us)/1000, 'f', 3, 64))
}

const zeroQueueMs = "0.000"

// setSlotHeaders sets what the slot says about the call on h, before the
// instance's own headers: Ember-Instance and Ember-Queue-Ms on every call;
// Ember-Cold-Start (true) and Server-Timing only on a call that waited for
// a start or queued. A warm call that found a free slot carries two
// headers, not four: each header costs Ember and every client parsing
// work on every call, and past eight, net/http's header map grows (and is
// cloned) at about three times the cost. Absent Ember-Cold-Start means
// warm. Headers an earlier target set are removed (a route that falls
// back calls invoke again on the same response).
func setSlotHeaders(h http.Header, s activator.Slot, serverTiming func(activator.Slot, string) string) {
	queueMs := formatQueueMs(s.Queue)
	if !s.Cold && queueMs == zeroQueueMs {
		// One array holds both values (a Header.Set each would allocate
		// a slice each). The names are canonical.
		v := &[2]string{s.Instance, zeroQueueMs}
		h[api.HeaderInstance] = v[0:1:1]
		h[api.HeaderQueueMs] = v[1:2:2]
		delete(h, api.HeaderColdStart)
		delete(h, api.HeaderServerTiming)
		return
	}
	v := &[4]string{s.Instance, queueMs, serverTiming(s, queueMs), "true"}
	h[api.HeaderInstance] = v[0:1:1]
	h[api.HeaderQueueMs] = v[1:2:2]
	h[api.HeaderServerTiming] = v[2:3:3]
	if s.Cold {
		h[api.HeaderColdStart] = v[3:4:4]
	} else {
		delete(h, api.HeaderColdStart)
	}
}

// serverTiming is the Server-Timing value for s, a call that queued or
// cold-started; queueMs is the queue time as the Ember-Queue-Ms header
// has it.
func (g *Gateway) serverTiming(s activator.Slot, queueMs string) string {
	if !s.Cold {
		return "queue;dur=" + queueMs
	}
	var b strings.Builder
	b.WriteString("queue;dur=")
	b.WriteString(queueMs)
	if in, ok := g.instances.Instance(s.Instance); ok {
		for _, ph := range in.PhaseOrder {
			fmt.Fprintf(&b, ", %s;dur=%.3f", ph, in.Phases[ph])
		}
	}
	return b.String()
}

// statusWriter remembers the status written, so the gateway knows whether
// the response has started, and adds the call's Ember-Cost-USD header
// just before the final status goes out.
type statusWriter struct {
	http.ResponseWriter
	status int
	costs  Coster           // nil: no cost header
	now    func() time.Time // the gateway's clock
	start  time.Time        // when the call arrived at invoke
	slot   activator.Slot   // the slot the call was served from
	costed bool
	cost   [1]string // Ember-Cost-USD's value, held here: one allocation less per call
}

func (s *statusWriter) WriteHeader(code int) {
	// 1xx (100 Continue, 103 Early Hints) passed on from the instance
	// do not start the response: its final status is still to come.
	if s.status == 0 && code >= 200 {
		s.status = code
		s.ownSlotHeaders()
		s.setCost()
	}
	s.ResponseWriter.WriteHeader(code)
}

// ownSlotHeaders keeps the slot headers Ember's alone: the forwarders add
// the instance's headers after the gateway's, so an instance could
// otherwise append to Ember-Instance or Ember-Queue-Ms, or, on a warm
// call that carries no Ember-Cold-Start, send its own.
func (s *statusWriter) ownSlotHeaders() {
	if s.slot.Instance == "" {
		return // not forwarded: nothing of the instance's here
	}
	h := s.Header()
	for _, k := range [...]string{api.HeaderInstance, api.HeaderQueueMs, api.HeaderColdStart} {
		if v := h[k]; len(v) > 1 {
			h[k] = v[:1:1]
		}
	}
	if !s.slot.Cold {
		delete(h, api.HeaderColdStart)
	}
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// canonicalCost is api.HeaderCost as http.Header keys it, for a direct
// assignment (Header.Set would canonicalize it on every call).
const canonicalCost = "Ember-Cost-Usd"

// setCost sets Ember-Cost-USD, once: the call's time on its instance so
// far (since it arrived, less its queue wait), as the meter prices it.
func (s *statusWriter) setCost() {
	if s.costed || s.costs == nil || s.slot.Instance == "" {
		return
	}
	s.costed = true
	service := max(s.now().Sub(s.start)-s.slot.Queue, 0)
	if usd, ok := s.costs.RequestCostByInstance(s.slot.Instance, service); ok {
		var b [32]byte
		s.cost[0] = string(strconv.AppendFloat(b[:0], usd, 'f', 9, 64))
		s.Header()[canonicalCost] = s.cost[:]
	} else {
		delete(s.Header(), canonicalCost) // an earlier target's, on a route's fallback
	}
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush flushes the underlying writer (streaming responses).
func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
