// Package instance owns the lifecycle of function instances: starting them
// through a driver, in-flight accounting, keep-warm expiry, restart backoff
// after failures and cold-start phase timestamps.
//
// Lifecycle: starting → ready → stopping → (removed) | failed.
//
// Updates roll out safely, one instance at a time: after a new spec
// version, ready instances of the old version keep serving ("outdated")
// while an instance of the new version starts beside them, even at
// scaling.max. Each time one is ready, one old instance drains (takes no new
// requests, stops when its last request ends) and the next new one starts,
// so an update never fails a request in flight, capacity never dips, and a
// version that cannot start never takes a serving function down.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// Observer receives lifecycle events for metrics and metering. Methods must
// be quick and must not call back into the Manager: Busy is called with the
// manager's lock held, so that one instance's busy/idle events arrive in the
// order they happened; Phase and StateChange are called without it.
type Observer interface {
	// Phase reports one cold-start phase of a newly ready instance.
	Phase(fn, phase string, d time.Duration)
	// StateChange reports an instance moving from one state to another
	// ("" for created or removed).
	StateChange(fn, id, from, to string, at time.Time)
	// Busy reports an instance's in-flight count going from 0 to 1 (busy=true)
	// or from 1 to 0 (busy=false).
	Busy(fn, id string, busy bool, at time.Time)
}

// Options configure a Manager.
type Options struct {
	// Now is the manager's clock (default time.Now): every timestamp it
	// records (start, ready, idle, backoff) comes from it, so tests can
	// move time.
	Now func() time.Time
	// Logs keeps what instances print (FileLogs: one file per instance);
	// nil discards it. The manager opens an instance's writer before its
	// start and closes it once the instance has gone.
	Logs LogSink
	// KeepFailed is how many failed instances per function stay visible.
	KeepFailed int
	// BackoffBase and BackoffMax bound the delay before restarting after
	// consecutive failed starts.
	BackoffBase, BackoffMax time.Duration
	// Notify is called (without locks) whenever capacity of fn may have
	// changed: a slot freed, an instance became ready, or a start failed.
	Notify func(fn string)
	// Ready, if set, is called with each instance the driver hands over
	// ready, before any request is dispatched to it (the server gives the
	// proxy the readiness probe's connection, driver.ConnHandoff). It
	// must not block.
	Ready    func(driver.Instance)
	Observer Observer
	// MaxPerFunction caps any function's instances whatever its spec says
	// (0 = no cap; the server refuses such specs at deploy already).
	MaxPerFunction int
	// MaxTotal caps live instances (starting, ready or stopping) across
	// all functions: a start beyond it does not happen (0 = no cap).
	MaxTotal int
	// MaxStarting bounds starts in progress at once, so that a burst of
	// demand cannot fork hundreds of processes in one instant; the others
	// wait their turn, still counted as starting (0 = no bound).
	MaxStarting int
	// MaxPrewarmed bounds the functions that have an instance prewarmed
	// at once (0 = none), with a driver that can (driver.Prewarmer): a
	// function at zero gets its next instance id chosen and its container
	// created ahead, and its next cold start takes it over.
	MaxPrewarmed int
}

// ErrInstanceLimit is returned while the server runs as many instances as
// Options.MaxTotal allows.
var ErrInstanceLimit = errors.New("server instance limit reached")

// ErrUnknownFunction is returned for a function the manager does not know.
var ErrUnknownFunction = errors.New("unknown function")

// ErrBudgetExceeded is returned while a budget forces a function to zero.
var ErrBudgetExceeded = &errkind.Error{Kind: errkind.RateLimited, Code: "budget_exceeded", Msg: "budget exceeded", RetryAfter: time.Minute}

// Manager runs the instances of every deployed function.
type Manager struct {
	drv    driver.Driver
	logger *slog.Logger
	opts   Options
	now    func() time.Time

	ctx    context.Context // ends when the manager shuts down; parent of starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // start and stop goroutines

	starting chan struct{} // a token per start in progress (MaxStarting); nil: unbounded

	prewarmer driver.Prewarmer // drv's capability; nil if it has none

	mu        sync.Mutex // guards the following
	pools     map[string]*pool
	byID      map[string]*Instance
	closed    bool           // Shutdown has begun: no new starts
	prewarmed int            // pools whose warm is set (Options.MaxPrewarmed)
	scratch   []api.Endpoint // AcquirePicked's list, reused under mu
}

// prewarm is the next instance of a function, prepared ahead by the
// driver (driver.Prewarmer) under an id chosen now.
type prewarm struct {
	version int64
	spec    driver.StartSpec
	done    chan struct{} // closed once Prewarm has returned
}

// pool is one function's set of instances. Manager.mu guards it.
type pool struct {
	fn      *spec.Function
	version int64
	// instances in creation order: the least-loaded pick breaks ties toward
	// the oldest, so excess instances fall idle and expire under light load.
	instances []*Instance
	failed    []*Instance // most recent last, at most KeepFailed

	failures  int       // consecutive failed starts
	nextStart time.Time // earliest next start after a failure
	lastErr   error     // why the last start failed
	lastErrAt time.Time

	coldStarts int64
	startSum   time.Duration // start-to-ready time of those starts
	requests   int64         // slots taken on its instances (health.go)

	// demandAt is when requests last waited for an instance (Demanded):
	// after a failed start, only such demand, or min, starts another
	// (health.go).
	demandAt time.Time

	// limit caps instances below scaling.max while a budget says so
	// (-1: no cap); limitWhy says which budget.
	limit    int
	limitWhy string

	// hold is the keep-warm window of an idle instance beyond the first, as
	// the controller last chose it (ReconcileIdle); -1 until then.
	hold time.Duration

	// warm is the function's next instance, prepared ahead while it is at
	// zero; the next new instance of its version takes its id.
	warm *prewarm
}

// holdFor is how long an idle instance of p is kept (shown as its expiry).
func (p *pool) holdFor() time.Duration {
	if p.hold >= 0 {
		return p.hold
	}
	return p.fn.Scaling.IdleTimeout.D()
}

// Instance is one instance of a function. Manager.mu guards the mutable fields.
type Instance struct {
	id, fn    string
	version   int64
	state     State
	outdated  bool // older version, still serving until the new one is ready
	startedAt time.Time
	readyAt   time.Time
	phases    []driver.Phase
	inFlight  int
	remote    int // in flight at other gateways, from their reports (Touch)
	served    int64
	idleSince time.Time
	exitErr   error
	tail      []string
	drv       driver.Instance
	logOut    io.WriteCloser // from Options.Logs; closed when the instance has gone

	// warm, if set, was prepared ahead: start waits for its Prewarm to
	// return before it calls the driver's Start.
	warm *prewarm

	// adopt, if set, is an instance the driver already runs: start waits
	// for it to be ready instead of calling the driver's Start (Adopt).
	adopt *adoption

	// cancelStart abandons the start in progress (stop of a starting
	// instance); gone is closed once the instance has left its pool,
	// stopped or failed (a terminal State).
	cancelStart context.CancelFunc
	startCtx    context.Context
	gone        chan struct{}

	// park, when > 0, is how long the driver may keep this instance
	// loaded after its stop (driver.Parker): set when it is the last
	// instance of its function, stopped for idleness, under no budget cap.
	park time.Duration
}

// LogValue lets an instance log itself.
func (i *Instance) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", i.id), slog.String("function", i.fn), slog.String("state", i.state.String()))
}

// New returns a Manager that starts instances with drv.
func New(drv driver.Driver, logger *slog.Logger, opts Options) *Manager {
	if opts.KeepFailed == 0 {
		opts.KeepFailed = 3
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		drv: drv, logger: logger, opts: opts, now: opts.Now,
		ctx: ctx, cancel: cancel,
		pools: make(map[string]*pool), byID: make(map[string]*Instance),
	}
	if opts.MaxStarting > 0 {
		m.starting = make(chan struct{}, opts.MaxStarting)
	}
	m.prewarmer, _ = drv.(driver.Prewarmer)
	return m
}

// SetNotify sets the capacity callback; call before the first request.
func (m *Manager) SetNotify(f func(fn string)) { m.opts.Notify = f }

// releaseLoaded has the driver stop what it keeps loaded for fn (driver.Releaser).
// It must not block: drivers stop in the background.
func (m *Manager) releaseLoaded(fn string) {
	if r, ok := m.drv.(driver.Releaser); ok {
		r.Release(fn)
	}
}

// SetReady sets Options.Ready; call before the first request.
func (m *Manager) SetReady(f func(driver.Instance)) { m.opts.Ready = f }

// Put installs or updates a function's spec. Ready instances of the
// previous version keep serving until an instance of this version is ready
// (see the package doc); those still starting are abandoned.
func (m *Manager) Put(fn *spec.Function, version int64) {
	var stop []*Instance
	m.mu.Lock()
	p, ok := m.pools[fn.Name]
	if !ok {
		p = &pool{limit: -1, hold: -1}
		m.pools[fn.Name] = p
	}
	if p.version != version {
		m.releaseLoaded(fn.Name) // loaded for the old spec
	}
	p.fn, p.version = fn, version
	p.limit, p.limitWhy = -1, "" // the controller re-applies a budget cap next tick
	p.failures, p.nextStart, p.lastErr = 0, time.Time{}, nil
	if p.warm != nil && p.warm.version != version {
		m.discardLocked(p) // created for the old spec
	}
	for _, in := range p.instances {
		if in.version == version {
			continue
		}
		switch in.state {
		case Ready:
			in.outdated = true
		case Starting:
			m.setLocked(in, Draining)
			stop = append(stop, in)
		}
	}
	ins := m.nextRolloutLocked(p)
	if len(ins) == 0 {
		m.prewarmLocked(p)
	}
	m.mu.Unlock()
	for _, in := range stop {
		m.stopAsync(in, "replaced by a new version")
	}
	m.launch(ins)
	m.opts.Notify(fn.Name)
}

// Remove stops every instance of fn and forgets it. Idle and starting
// instances stop at once; busy ones take no new requests and stop when
// their last request ends, or when ctx ends, whichever is first.
func (m *Manager) Remove(ctx context.Context, name string) {
	m.mu.Lock()
	p, ok := m.pools[name]
	if !ok {
		m.mu.Unlock()
		return
	}
	delete(m.pools, name)
	m.discardLocked(p)
	m.releaseLoaded(name)
	var now, busy []*Instance
	for _, in := range p.instances {
		busyNow := (in.state == Ready || in.state == Draining) && in.inFlight > 0
		if in.state == Starting || in.state == Ready {
			m.setLocked(in, Draining)
		}
		if busyNow {
			busy = append(busy, in) // release stops it when it falls idle
		} else {
			now = append(now, in)
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range now {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop(ctx, in, "function removed")
		}()
	}
	for _, in := range busy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-in.gone:
			case <-ctx.Done():
				stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				m.stop(stopCtx, in, "function removed; requests still in flight were cut")
			}
		}()
	}
	wg.Wait()
	m.opts.Notify(name)
}

// Function returns the current spec of fn.
func (m *Manager) Function(name string) (*spec.Function, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pools[name]
	if !ok {
		return nil, false
	}
	return p.fn, true
}

// newInstanceLocked adds a starting instance of p's current version; m.mu
// must be held and the caller launches it.
func (m *Manager) newInstanceLocked(p *pool, now time.Time) *Instance {
	in := &Instance{
		id: newID(p.fn.Name), fn: p.fn.Name, version: p.version,
		state: Starting, startedAt: now, gone: make(chan struct{}),
	}
	if w := p.warm; w != nil && w.version == p.version {
		in.id, in.warm = w.spec.InstanceID, w
		p.warm = nil
		m.prewarmed--
	}
	in.startCtx, in.cancelStart = context.WithCancel(m.ctx)
	p.instances = append(p.instances, in)
	m.byID[in.id] = in
	return in
}

func newID(fn string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return strings.ReplaceAll(fn, "/", "-") + "-" + string(b)
}

func (m *Manager) launch(ins []*Instance) {
	for _, in := range ins {
		if o := m.opts.Observer; o != nil {
			o.StateChange(in.fn, in.id, "", api.StateStarting, in.startedAt)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.start(in)
		}()
	}
}

// start runs one instance's start to ready or failure.
func (m *Manager) start(in *Instance) {
	defer in.cancelStart()
	m.mu.Lock()
	p := m.pools[in.fn]
	if p == nil || p.version != in.version || in.state != Starting {
		stopped := in.state == Stopping // stop has accounted for it
		m.forgetLocked(in)
		m.mu.Unlock()
		if in.adopt != nil {
			in.adopt.abandon()
		}
		if o := m.opts.Observer; o != nil && !stopped {
			o.StateChange(in.fn, in.id, api.StateStarting, "", m.now())
		}
		return
	}
	fn := p.fn
	m.mu.Unlock()

	if m.starting != nil && in.adopt == nil {
		select {
		case m.starting <- struct{}{}:
			defer func() { <-m.starting }()
		case <-in.startCtx.Done():
			// Stopped (or the server shut down) while waiting its turn;
			// stop or Shutdown accounts for it.
			m.mu.Lock()
			stopped := in.state == Stopping || in.state.over()
			if !stopped {
				m.forgetLocked(in)
			}
			m.mu.Unlock()
			if o := m.opts.Observer; o != nil && !stopped {
				o.StateChange(in.fn, in.id, api.StateStarting, "", m.now())
			}
			return
		}
	}

	logger := m.logger.With("function", in.fn, "instance", in.id)
	var out io.Writer
	if m.opts.Logs != nil && in.adopt == nil {
		if w, err := m.opts.Logs.Open(in.fn, in.id); err != nil {
			logger.Warn("instance output will not be kept", "err", err)
		} else {
			m.mu.Lock()
			if in.state.over() || in.state == Stopping {
				// Stopped (and accounted for) before the driver ran.
				m.mu.Unlock()
				w.Close()
				return
			}
			in.logOut, out = w, w
			m.mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(in.startCtx, fn.StartTimeout.D())
	defer cancel()
	ss := StartSpecFor(fn, in.version, in.id)
	ss.Output = out
	if in.warm != nil {
		// Its container is still being created: waiting costs less than
		// creating another beside it.
		select {
		case <-in.warm.done:
		case <-ctx.Done():
		}
	}
	var di driver.Instance
	var err error
	if in.adopt != nil {
		di, err = in.adopt.wait(ctx)
	} else {
		di, err = m.drv.Start(ctx, ss)
	}
	if in.warm != nil {
		// A no-op when Start took it over; a start that failed before
		// that leaves it to remove.
		m.prewarmer.Discard(context.WithoutCancel(ctx), in.warm.spec)
	}
	now := m.now()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && m.ctx.Err() == nil {
			err = fmt.Errorf("not ready within start_timeout %s: %w", fn.StartTimeout.D(), err)
		}
		m.fail(in, err, now, logger)
		if in.adopt != nil {
			in.adopt.abandon()
		}
		return
	}

	if m.opts.Ready != nil {
		m.opts.Ready(di)
	}
	m.mu.Lock()
	if in.state.over() || in.state == Stopping {
		// A stop (which reports the events) caught the start before the
		// driver handed over the instance: it cannot stop what it never
		// saw, so it is stopped here.
		m.mu.Unlock()
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := di.Stop(stopCtx); err != nil {
			logger.Warn("stop instance", "err", err)
		}
		return
	}
	in.drv = di
	in.phases = di.Phases()
	in.readyAt = now
	in.idleSince = now
	stopNow := m.pools[in.fn] == nil || in.state != Starting
	var replaced, next []*Instance
	if !stopNow {
		m.setLocked(in, Ready)
		p.failures, p.lastErr = 0, nil
		if in.adopt == nil { // an adopted instance's start was another leader's
			p.coldStarts++
			p.startSum += now.Sub(in.startedAt)
		}
		replaced = m.retireOutdatedLocked(p)
		next = m.nextRolloutLocked(p)
	}
	m.mu.Unlock()
	if stopNow {
		m.stopAsync(in, "no longer wanted")
		return
	}
	for _, old := range replaced {
		m.stopAsync(old, "replaced by a new version")
	}
	m.launch(next)
	// Waiting requests go first: the log line and the observer's phase
	// and state records come after the dispatch, not between the
	// instance's readiness and its first request.
	m.opts.Notify(in.fn)
	if in.adopt != nil {
		logger.Info("instance adopted", "waited", now.Sub(in.startedAt).Round(time.Microsecond))
	} else {
		logger.Info("instance ready", "cold_start", now.Sub(in.startedAt).Round(time.Microsecond))
	}
	if o := m.opts.Observer; o != nil {
		if in.adopt == nil { // an adopted instance's phases were another leader's start
			prev := in.startedAt
			for _, ph := range in.phases {
				o.Phase(in.fn, ph.Name, ph.At.Sub(prev))
				prev = ph.At
			}
			o.Phase(in.fn, "total", now.Sub(in.startedAt))
		}
		o.StateChange(in.fn, in.id, api.StateStarting, api.StateReady, now)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watch(in, di, logger)
	}()
}

// fail records a failed start or an unexpected exit and arms the backoff.
func (m *Manager) fail(in *Instance, err error, now time.Time, logger *slog.Logger) {
	var tail []string
	var se *driver.StartError
	if errors.As(err, &se) {
		tail = se.Tail
	} else if lt, ok := in.drv.(driver.LogTailer); ok && in.drv != nil {
		tail = lt.Tail(20)
	} else if in.adopt != nil {
		tail = in.adopt.tail()
	}
	m.mu.Lock()
	if in.state.over() || in.state == Stopping {
		// A stop got there first: the exit or failed start is its doing,
		// and it reports the events.
		m.mu.Unlock()
		return
	}
	from := in.apiState()
	duringStart := !in.wasReady()
	m.setLocked(in, Failed)
	in.exitErr = err
	in.tail = tail
	logOut := m.takeLogLocked(in)
	p := m.pools[in.fn]
	if p != nil {
		p.instances = slices.DeleteFunc(p.instances, func(x *Instance) bool { return x == in })
	}
	if p != nil && p.version == in.version {
		p.failed = append(p.failed, in)
		if len(p.failed) > m.opts.KeepFailed {
			delete(m.byID, p.failed[0].id)
			p.failed = p.failed[1:]
		}
		// An adopted instance that fails its probe was another leader's
		// start (often a Pod being deleted at the handover): it is
		// recorded, but arms no backoff and is not the function's last
		// start error, or a handover would refuse callers.
		adopted := duringStart && in.adopt != nil
		if duringStart && !adopted {
			p.failures++
			backoff := m.opts.BackoffBase << min(p.failures-1, 16)
			p.nextStart = now.Add(min(backoff, m.opts.BackoffMax))
		}
		if !adopted {
			p.lastErr, p.lastErrAt = err, now
		}
	} else {
		delete(m.byID, in.id)
	}
	m.mu.Unlock()
	closeLog(logOut)
	logger.Error("instance failed", "state", from, "err", err)
	if o := m.opts.Observer; o != nil {
		o.StateChange(in.fn, in.id, from, api.StateFailed, now)
	}
	m.opts.Notify(in.fn)
}

// watch waits for an unexpected exit of a ready instance.
func (m *Manager) watch(in *Instance, di driver.Instance, logger *slog.Logger) {
	<-di.Done()
	m.mu.Lock()
	expected := in.state == Stopping
	m.mu.Unlock()
	if expected {
		return
	}
	err := di.Err()
	if err == nil {
		err = driver.ErrExited
	}
	m.fail(in, fmt.Errorf("exited while ready: %w", err), m.now(), logger)
}

// Exited waits up to d for instance id to be known dead and returns why.
func (m *Manager) Exited(id string, d time.Duration) (error, bool) {
	m.mu.Lock()
	in := m.byID[id]
	var di driver.Instance
	if in != nil {
		di = in.drv
	}
	m.mu.Unlock()
	if di == nil {
		return nil, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-di.Done():
		err := di.Err()
		if err == nil {
			err = driver.ErrExited
		}
		return err, true
	case <-t.C:
		return nil, false
	}
}

func (m *Manager) stopAsync(in *Instance, why string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.stop(ctx, in, why)
	}()
}

// stop stops one instance and forgets it.
func (m *Manager) stop(ctx context.Context, in *Instance, why string) {
	m.mu.Lock()
	if in.state.over() {
		m.mu.Unlock()
		return
	}
	from := in.apiState()
	if in.state != Stopping {
		m.setLocked(in, Stopping)
	}
	di := in.drv
	park := in.park
	m.mu.Unlock()
	if pk, ok := di.(driver.Parker); ok && park > 0 && pk.Park(park) {
		// The driver keeps it loaded for the function's next start.
	} else if di != nil {
		if err := di.Stop(ctx); err != nil {
			m.logger.Warn("stop instance", "instance", in.id, "err", err)
		}
	} else if in.cancelStart != nil {
		in.cancelStart() // the driver abandons the start and cleans up
	}
	m.mu.Lock()
	if in.state.over() { // a concurrent stop got here first
		m.mu.Unlock()
		return
	}
	m.forgetLocked(in)
	logOut := m.takeLogLocked(in)
	m.mu.Unlock()
	closeLog(logOut)
	m.logger.Info("instance stopped", "function", in.fn, "instance", in.id, "reason", why)
	if o := m.opts.Observer; o != nil {
		now := m.now()
		o.StateChange(in.fn, in.id, from, api.StateStopping, now)
		o.StateChange(in.fn, in.id, api.StateStopping, "", now)
	}
	m.opts.Notify(in.fn)
}

// forgetLocked removes in from its pool, stopped for good; m.mu must be
// held.
func (m *Manager) forgetLocked(in *Instance) {
	delete(m.byID, in.id)
	if p := m.pools[in.fn]; p != nil {
		p.instances = slices.DeleteFunc(p.instances, func(x *Instance) bool { return x == in })
		m.prewarmLocked(p)
	}
	if !in.state.over() {
		m.setLocked(in, Stopped)
	}
}

// prewarmLocked has the driver prepare p's next instance when p is at
// zero, has none prepared, is not failing or held at zero by a budget,
// and the server-wide bound allows; m.mu must be held.
func (m *Manager) prewarmLocked(p *pool) {
	if m.prewarmer == nil || m.closed || p.warm != nil || len(p.instances) > 0 || p.failures > 0 ||
		p.limit == 0 || m.prewarmed >= m.opts.MaxPrewarmed {
		return
	}
	s := StartSpecFor(p.fn, p.version, newID(p.fn.Name))
	if !m.prewarmer.Prewarms(s) {
		return
	}
	w := &prewarm{version: p.version, spec: s, done: make(chan struct{})}
	p.warm = w
	m.prewarmed++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(w.done)
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		defer cancel()
		if err := m.prewarmer.Prewarm(ctx, s); err != nil {
			m.logger.Debug("cannot prepare an instance ahead", "function", s.Function, "instance", s.InstanceID, "err", err)
		}
	}()
}

// discardLocked drops p's prepared instance, if any, and has the driver
// release it once its Prewarm has returned; m.mu must be held.
func (m *Manager) discardLocked(p *pool) {
	w := p.warm
	if w == nil {
		return
	}
	p.warm = nil
	m.prewarmed--
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		<-w.done
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m.prewarmer.Discard(ctx, w.spec)
	}()
}

// takeLogLocked detaches in's log for the caller to close once m.mu is
// released: closing prunes the function's old logs (a directory read),
// which must not hold up every call that takes m.mu.
func (m *Manager) takeLogLocked(in *Instance) io.Closer {
	w := in.logOut
	in.logOut = nil
	if w == nil {
		return nil // a nil interface, not a typed nil
	}
	return w
}

func closeLog(c io.Closer) {
	if c != nil {
		c.Close()
	}
}

// Shutdown stops every instance (in parallel, bounded by ctx) and waits for
// the manager's goroutines.
func (m *Manager) Shutdown(ctx context.Context) {
	m.cancel() // abandons starts in progress
	m.mu.Lock()
	m.closed = true
	for _, p := range m.pools {
		m.discardLocked(p)
	}
	// byID, not the pools: it also holds draining instances of removed
	// functions.
	var all []*Instance
	for _, in := range m.byID {
		all = append(all, in)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop(ctx, in, "server shutting down")
		}()
	}
	wg.Wait()
	m.wg.Wait()
}

// SetObserver sets the lifecycle observer; call before the first start.
func (m *Manager) SetObserver(o Observer) { m.opts.Observer = o }
