// Package controller keeps the set of deployed functions and runs the loop
// that applies scaling decisions: each tick it samples every function's
// demand, asks the pure autoscaler for a desired instance count, and has the
// instance manager reconcile toward it (start up to desired; stop instances
// idle past their keep-warm window beyond it). An activator's poke (Wake)
// runs the same decision at once with the demand it sees, so
// autoscaler.Decide is the only rule that sizes a function.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/autoscaler"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// ErrNotFound is returned for a function that is not deployed.
var ErrNotFound = errkind.New(errkind.NotFound, "unknown_function", "function not found")

// ErrPrepare wraps a failure to fetch what a function needs at deploy.
var ErrPrepare = errkind.New(errkind.Upstream, "prepare_failed", "cannot prepare function")

// Store persists function specs.
type Store interface {
	// PutFunction creates or replaces a spec and returns the stored record.
	PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (fn api.Function, created bool, err error)
	DeleteFunction(ctx context.Context, name string) (existed bool, err error)
	ListFunctions(ctx context.Context) ([]api.Function, error)
}

// Scaler applies decisions to instances (instance.Manager).
type Scaler interface {
	Put(fn *spec.Function, version int64)
	Remove(ctx context.Context, name string)
	// ReconcileIdle starts up to desired instances and stops those beyond
	// it idle for extra (while others remain) or last (the only one).
	ReconcileIdle(fn string, desired int, extra, last time.Duration, now time.Time)
	Health(fn string) (live int, retryAt time.Time, failing error)
	Limit(fn string, n int, why string)
	// Demanded records that requests wait for an instance of fn now: after
	// a failed start, only that (or min) starts another.
	Demanded(fn string, now time.Time)
}

// Demand reports a function's demand, summed over every gateway that
// serves it (DemandReports).
type Demand interface {
	// Demand returns the time-weighted average concurrency (in flight +
	// queued) since the previous call, and the current level, at now.
	Demand(fn string, now time.Time) (average float64, current int)
	// Forget drops fn's demand and fails its queued requests.
	Forget(fn string)
}

// Options tune the loop.
type Options struct {
	Tick time.Duration // default 500ms
	// Validate, if set, runs after the spec's own validation: the
	// runtime-specific checks (the chosen driver's, driver.Validator). Its
	// error, a *spec.ValidationError, rejects the deploy as an invalid spec.
	Validate func(f *spec.Function) error
	// Prepare, if set, runs before a deploy is stored: it fetches what the
	// function needs (models, runtimes), so the first cold start does not
	// pay for a download. A failure rejects the deploy.
	Prepare func(ctx context.Context, f *spec.Function) error
	// Budgets, if set, says which functions are over their daily budget.
	Budgets Budgets
	// KeepWarm wires the learned keep-warm policy (keepwarm.go).
	KeepWarm KeepWarm
	// Passive keeps the registry without deciding: Deploy and Sync store
	// and install specs but never reconcile instances. A gateway's
	// controller is passive; the leader controller starts and stops
	// instances, and a second decider would start duplicates.
	Passive bool
}

// Budgets reports a function over budget (metering): action is "" within
// budget, else warn, cap or scale-to-zero.
type Budgets interface {
	OverBudget(fn string, now time.Time) (action string, spentUSD float64)
}

// Controller owns deployed functions and their scaling loop.
type Controller struct {
	store  Store
	scaler Scaler
	demand Demand
	logger *slog.Logger
	opts   Options
	now    func() time.Time

	// applyMu serialises each store write with its registry update, and
	// Sync, so the registry follows the store's order (sync.go).
	applyMu sync.Mutex

	mu    sync.Mutex // guards funcs
	funcs map[string]*function

	restored map[string][]byte // stored keep-warm histograms not yet claimed; under applyMu at Load, then fn.apply
	lastSave time.Time         // owned by Run's goroutine
}

type function struct {
	// apply serialises decide-and-reconcile of this function between the
	// tick and pokes, so a stale decision is never applied after a newer
	// one. Taken before Controller.mu, never while a Demand is sampled.
	apply sync.Mutex

	rec      api.Function
	spec     *spec.Function
	window   *autoscaler.Window
	decision autoscaler.Decision
	learn    *learner // idle_timeout: auto; guarded by apply
}

// New returns a Controller.
func New(store Store, scaler Scaler, demand Demand, logger *slog.Logger, opts Options) *Controller {
	if opts.Tick <= 0 {
		opts.Tick = 500 * time.Millisecond
	}
	return &Controller{store: store, scaler: scaler, demand: demand, logger: logger, opts: opts,
		now: time.Now, funcs: make(map[string]*function)}
}

// Load restores deployed functions from the store.
func (c *Controller) Load(ctx context.Context) error {
	recs, err := c.store.ListFunctions(ctx)
	if err != nil {
		return fmt.Errorf("load functions: %w", err)
	}
	for _, rec := range recs {
		// Parsed as a document, so an explicit 0 stored with it keeps its
		// meaning rather than turning into a default after a restart.
		f, err := spec.Parse(rec.Spec)
		if err != nil {
			c.logger.Error("stored spec no longer valid; skipping", "function", rec.Name, "err", err)
			continue
		}
		c.install(rec, f)
	}
	if err := c.loadKeepWarm(ctx); err != nil {
		return fmt.Errorf("load keep-warm state: %w", err)
	}
	c.logger.Info("functions loaded", "count", len(recs))
	return nil
}

func (c *Controller) install(rec api.Function, f *spec.Function) {
	c.mu.Lock()
	fn := c.funcs[f.Name]
	if fn == nil {
		fn = &function{window: autoscaler.NewWindow(time.Second, 60*time.Second)}
		c.funcs[f.Name] = fn
	}
	fn.rec, fn.spec = rec, f
	c.mu.Unlock()
	c.scaler.Put(f, rec.Version)
}

// Deploy validates, stores and (re)starts a function.
func (c *Controller) Deploy(ctx context.Context, f *spec.Function) (api.Function, bool, error) {
	f.Default()
	if d := c.opts.KeepWarm.DefaultIdle; d != nil && !f.IdleTimeoutGiven() {
		f.Scaling.IdleTimeout = *d
	}
	if err := f.Validate(); err != nil {
		return api.Function{}, false, err
	}
	if c.opts.Validate != nil {
		if err := c.opts.Validate(f); err != nil {
			return api.Function{}, false, err
		}
	}
	if c.opts.Prepare != nil {
		if err := c.opts.Prepare(ctx, f); err != nil {
			return api.Function{}, false, fmt.Errorf("%w %q: %w", ErrPrepare, f.Name, err)
		}
	}
	body, err := json.Marshal(f)
	if err != nil {
		return api.Function{}, false, fmt.Errorf("encode spec: %w", err)
	}
	c.applyMu.Lock()
	rec, created, err := c.store.PutFunction(ctx, f.Name, body, c.now())
	if err != nil {
		c.applyMu.Unlock()
		return api.Function{}, false, fmt.Errorf("store function %q: %w", f.Name, err)
	}
	c.install(rec, f)
	c.applyMu.Unlock()
	c.logger.Info("function deployed", "function", f.Name, "version", rec.Version, "created", created)
	c.tickOne(f.Name, c.now()) // provision min instances without waiting a tick
	return rec, created, nil
}

// Delete removes a function, stopping its instances after in-flight
// requests finish (bounded by ctx).
func (c *Controller) Delete(ctx context.Context, name string) error {
	c.applyMu.Lock()
	existed, err := c.store.DeleteFunction(ctx, name)
	if err != nil {
		c.applyMu.Unlock()
		return fmt.Errorf("delete function %q: %w", name, err)
	}
	c.mu.Lock()
	_, live := c.funcs[name]
	delete(c.funcs, name)
	c.mu.Unlock()
	c.applyMu.Unlock()
	if !existed && !live {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	// Waiters first: they get "unknown function" (404) now instead of
	// waiting for instances that are going away and failing with 503.
	c.demand.Forget(name)
	c.scaler.Remove(ctx, name)
	c.demand.Forget(name) // a request that slipped in while instances drained
	if st := c.opts.KeepWarm.Store; st != nil {
		if err := st.SaveKeepWarm(ctx, name, nil, c.now()); err != nil {
			c.logger.Warn("keep-warm state not deleted", "function", name, "err", err)
		}
	}
	c.logger.Info("function removed", "function", name)
	return nil
}

// Get returns a deployed function with its last decision.
func (c *Controller) Get(name string) (api.Function, autoscaler.Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn := c.funcs[name]
	if fn == nil {
		return api.Function{}, autoscaler.Decision{}, false
	}
	return fn.rec, fn.decision, true
}

// List returns deployed functions sorted by name.
func (c *Controller) List() []api.Function {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]api.Function, 0, len(c.funcs))
	for _, fn := range c.funcs {
		out = append(out, fn.rec)
	}
	slices.SortFunc(out, func(a, b api.Function) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Run ticks until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The store closes after the loop stops: save what was learned.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.saveKeepWarm(sctx, c.now(), true)
			cancel()
			return nil
		case <-t.C:
			now := c.now()
			c.tick(now)
			c.saveKeepWarm(ctx, now, false)
		}
	}
}

func (c *Controller) tick(now time.Time) {
	c.mu.Lock()
	names := make([]string, 0, len(c.funcs))
	for n := range c.funcs {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		c.tickOne(n, now)
	}
}

// tickOne samples, decides and reconciles one function. A panic in one
// function's decision is logged and does not stop the loop.
func (c *Controller) tickOne(name string, now time.Time) {
	if c.opts.Passive {
		return
	}
	defer c.recoverDecide(name)
	avg, _ := c.demand.Demand(name, now)
	c.decide(name, now, avg, true, 0)
}

// Wake is an activator's poke: requests of fn wait for a slot, and demand
// (in flight + queued) is what it sees now. It runs the one sizing rule at
// once, without waiting for the tick, so a scale from zero starts as many
// instances as that demand needs, within max.
//
// An activator calls it while holding its queue lock, so it must not sample
// Demand (which takes that lock); it only decides and reconciles.
func (c *Controller) Wake(name string, demand int) {
	defer c.recoverDecide(name)
	now := c.now()
	if demand > 0 {
		c.scaler.Demanded(name, now)
	}
	c.decide(name, now, 0, false, demand)
}

func (c *Controller) recoverDecide(name string) {
	if r := recover(); r != nil {
		c.logger.Error("scaling decision panicked", "function", name, "panic", r, "stack", string(debug.Stack()))
	}
}

// decide records a tick's sample (record), runs autoscaler.Decide with the
// poke's current demand (0 on a tick), applies the budget and reconciles.
func (c *Controller) decide(name string, now time.Time, avg float64, record bool, current int) {
	c.mu.Lock()
	fn := c.funcs[name]
	c.mu.Unlock()
	if fn == nil {
		return
	}
	fn.apply.Lock()
	defer fn.apply.Unlock()
	live, _, _ := c.scaler.Health(name)
	c.mu.Lock()
	if c.funcs[name] != fn { // removed meanwhile
		c.mu.Unlock()
		return
	}
	if record {
		fn.window.Record(now, avg)
	}
	s := fn.spec.Scaling
	minNow, idle := s.EffectiveMin(now), s.IdleTimeout.D()
	extra, last := idle, idle
	if l := c.learnerFor(fn); l != nil {
		// Learned keep-warm: the decision falls to min as soon as traffic
		// stops, and the policy raises min for its window, as a schedule
		// window does (pre-warm, then keep-alive).
		idle = 0
		if c.observe(name, l, fn.spec, now, avg > 0 || current > 0, live) > 0 {
			minNow = max(minNow, min(1, s.Max))
		}
		// Instances beyond the first: the windows' hold, as the
		// simulator applies it (keepalive.Windows.IdleHold).
		extra, last = l.windows.IdleHold(2), l.windows.IdleHold(1)
	}
	d := autoscaler.Decide(autoscaler.Params{
		Min: minNow, Max: s.Max, Buffer: s.Buffer,
		Concurrency: s.Concurrency, Target: s.Target, IdleTimeout: idle,
		Ready:        live,
		Current:      float64(current),
		PanicSince:   fn.decision.PanicSince,
		PanicDesired: fn.decision.PanicDesired,
	}, fn.window, now)
	if d.Desired != fn.decision.Desired || d.Panic != fn.decision.Panic {
		c.logger.Debug("scaling decision", "function", name, "desired", d.Desired, "panic", d.Panic,
			"reason", d.Reason, "poke", !record)
	}
	budget := fn.spec.Budget
	c.mu.Unlock()
	if c.opts.Budgets != nil && budget != nil {
		d = c.applyBudget(name, d, now)
	}
	c.mu.Lock()
	fn.decision = d
	c.mu.Unlock()
	c.scaler.ReconcileIdle(name, d.Desired, extra, last, now)
}

// applyBudget caps the decision of a function over its daily budget: cap
// keeps at most one instance, scale-to-zero none (callers are refused);
// warn only logs (metering logs once a day).
func (c *Controller) applyBudget(name string, d autoscaler.Decision, now time.Time) autoscaler.Decision {
	action, spent := c.opts.Budgets.OverBudget(name, now)
	switch action {
	case spec.BudgetCap:
		c.scaler.Limit(name, 1, fmt.Sprintf("daily budget spent ($%.4f); capped at 1 instance until 00:00 UTC", spent))
		d.Desired = min(d.Desired, 1)
		d.Reason += fmt.Sprintf("; over budget ($%.4f): capped at 1", spent)
	case spec.BudgetScaleToZero:
		c.scaler.Limit(name, 0, fmt.Sprintf("daily budget spent ($%.4f); scaled to zero until 00:00 UTC", spent))
		d.Desired = 0
		d.Reason += fmt.Sprintf("; over budget ($%.4f): scaled to zero", spent)
	default:
		c.scaler.Limit(name, -1, "")
	}
	return d
}
