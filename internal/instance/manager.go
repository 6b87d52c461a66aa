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
	"os"
	"path/filepath"
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
	// LogDir receives one log file per instance under LogDir/<function>/.
	LogDir string
	// KeepFailed is how many failed instances per function stay visible.
	KeepFailed int
	// KeepLogs is how many instance log files per function are kept.
	KeepLogs int
	// BackoffBase and BackoffMax bound the delay before restarting after
	// consecutive failed starts.
	BackoffBase, BackoffMax time.Duration
	// Notify is called (without locks) whenever capacity of fn may have
	// changed: a slot freed, an instance became ready, or a start failed.
	Notify   func(fn string)
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

	mu     sync.Mutex // guards the following
	pools  map[string]*pool
	byID   map[string]*Instance
	closed bool // Shutdown has begun: no new starts
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

	// limit caps instances below scaling.max while a budget says so
	// (-1: no cap); limitWhy says which budget.
	limit    int
	limitWhy string
}

// Instance is one instance of a function. Manager.mu guards the mutable fields.
type Instance struct {
	id, fn    string
	version   int64
	state     string
	draining  bool
	outdated  bool // older version, still serving until the new one is ready
	startedAt time.Time
	readyAt   time.Time
	phases    []driver.Phase
	inFlight  int
	served    int64
	idleSince time.Time
	exitErr   error
	tail      []string
	drv       driver.Instance
	logFile   *os.File

	// cancelStart abandons the start in progress (stop of a starting
	// instance); gone is closed once the instance has left its pool,
	// stopped or failed.
	cancelStart context.CancelFunc
	startCtx    context.Context
	gone        chan struct{}
	retired     bool
}

// LogValue lets an instance log itself.
func (i *Instance) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", i.id), slog.String("function", i.fn), slog.String("state", i.state))
}

// New returns a Manager that starts instances with drv.
func New(drv driver.Driver, logger *slog.Logger, opts Options) *Manager {
	if opts.KeepFailed == 0 {
		opts.KeepFailed = 3
	}
	if opts.KeepLogs == 0 {
		opts.KeepLogs = 50
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		drv: drv, logger: logger, opts: opts, now: time.Now,
		ctx: ctx, cancel: cancel,
		pools: make(map[string]*pool), byID: make(map[string]*Instance),
	}
	if opts.MaxStarting > 0 {
		m.starting = make(chan struct{}, opts.MaxStarting)
	}
	return m
}

// SetNotify sets the capacity callback; call before the first request.
func (m *Manager) SetNotify(f func(fn string)) { m.opts.Notify = f }

// Put installs or updates a function's spec. Ready instances of the
// previous version keep serving until an instance of this version is ready
// (see the package doc); those still starting are abandoned.
func (m *Manager) Put(fn *spec.Function, version int64) {
	var stop []*Instance
	m.mu.Lock()
	p, ok := m.pools[fn.Name]
	if !ok {
		p = &pool{limit: -1}
		m.pools[fn.Name] = p
	}
	p.fn, p.version = fn, version
	p.limit, p.limitWhy = -1, "" // the controller re-applies a budget cap next tick
	p.failures, p.nextStart, p.lastErr = 0, time.Time{}, nil
	for _, in := range p.instances {
		if in.version == version || in.draining {
			continue
		}
		if in.state == api.StateReady {
			in.outdated = true
		} else {
			in.draining = true
			stop = append(stop, in)
		}
	}
	ins := m.nextRolloutLocked(p)
	m.mu.Unlock()
	for _, in := range stop {
		m.stopAsync(in, "replaced by a new version")
	}
	m.launch(ins)
	m.opts.Notify(fn.Name)
}

// nextRolloutLocked starts the next instance of p's current version while
// outdated instances still serve and none of the current version is
// starting, unless starts are backing off or a budget holds the function at
// zero. It may go one above scaling.max (or a budget cap): an outdated
// instance leaves as each new one is ready. m.mu must be held; the caller
// launches the result.
func (m *Manager) nextRolloutLocked(p *pool) []*Instance {
	if m.closed || p.limit == 0 {
		return nil
	}
	if outdated, starting := rolloutProgressLocked(p); !outdated || starting > 0 || m.now().Before(p.nextStart) {
		return nil
	}
	if m.roomLocked() == 0 {
		return nil // the next reconcile retries once an instance has left
	}
	return []*Instance{m.newInstanceLocked(p, m.now())}
}

// rolloutProgressLocked reports whether outdated instances of p still serve, and
// how many of the current version are starting. m.mu must be held.
func rolloutProgressLocked(p *pool) (outdated bool, starting int) {
	for _, in := range p.instances {
		switch {
		case in.outdated && !in.draining:
			outdated = true
		case in.version == p.version && !in.draining && in.state == api.StateStarting:
			starting++
		}
	}
	return outdated, starting
}

// retireOutdatedLocked drains one outdated instance of p, now that an
// instance of the current version is ready: the idlest, so capacity moves
// over one for one. It returns it when it is idle, to stop now; a busy one
// stops when its last request ends. m.mu must be held.
func (m *Manager) retireOutdatedLocked(p *pool) []*Instance {
	var pick *Instance
	for _, in := range p.instances {
		if in.outdated && !in.draining && (pick == nil || in.inFlight < pick.inFlight) {
			pick = in
		}
	}
	if pick == nil {
		return nil
	}
	pick.draining = true
	if pick.inFlight == 0 && pick.state == api.StateReady {
		return []*Instance{pick}
	}
	return nil
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
	var now, busy []*Instance
	for _, in := range p.instances {
		in.draining = true
		if in.state == api.StateReady && in.inFlight > 0 {
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

// TryAcquire takes a slot on the ready instance of fn with the fewest
// requests in flight, never above the spec's concurrency. release must be
// called exactly once when the request ends.
func (m *Manager) TryAcquire(fn string) (id, addr string, readyAt time.Time, release func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return "", "", time.Time{}, nil, false
	}
	limit := p.fn.Scaling.Concurrency
	var best *Instance
	for _, in := range p.instances {
		if in.state != api.StateReady || in.draining || (limit > 0 && in.inFlight >= limit) {
			continue
		}
		if exited(in.drv) {
			// Dead, and its watcher has not marked it failed yet: a
			// request sent there would fail for nothing.
			continue
		}
		if best == nil || in.inFlight < best.inFlight {
			best = in
		}
	}
	if best == nil {
		return "", "", time.Time{}, nil, false
	}
	best.inFlight++
	best.served++
	if best.inFlight == 1 {
		best.idleSince = time.Time{}
		if o := m.opts.Observer; o != nil {
			o.Busy(fn, best.id, true, m.now())
		}
	}
	var once sync.Once
	in := best
	return in.id, in.drv.Addr(), in.readyAt, func() { once.Do(func() { m.release(in) }) }, true
}

func (m *Manager) release(in *Instance) {
	m.mu.Lock()
	in.inFlight--
	idle := in.inFlight == 0
	var stop bool
	if idle {
		now := m.now()
		in.idleSince = now
		stop = in.draining && in.state == api.StateReady
		if o := m.opts.Observer; o != nil {
			o.Busy(in.fn, in.id, false, now)
		}
	}
	_, removed := m.pools[in.fn]
	m.mu.Unlock()
	if stop {
		why := "replaced by a new version"
		if !removed {
			why = "function removed"
		}
		m.stopAsync(in, why)
	}
	m.opts.Notify(in.fn)
}

// Load reports fn's instances that can take requests now or soon: ready
// ones with their free slots, and starting ones. free is -1 when
// concurrency is unlimited and an instance is ready.
type Load struct {
	Ready, Starting, InFlight, Free int
	// Failing is set while starts are backing off after a failure.
	Failing   error
	RetryAt   time.Time
	Unlimited bool
}

// Load returns fn's current capacity picture.
func (m *Manager) Load(fn string) (Load, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return Load{}, false
	}
	return m.loadLocked(p), true
}

// loadLocked computes p's load; m.mu must be held.
func (m *Manager) loadLocked(p *pool) Load {
	var l Load
	limit := p.fn.Scaling.Concurrency
	l.Unlimited = limit == 0
	for _, in := range p.instances {
		if in.draining {
			continue
		}
		switch in.state {
		case api.StateStarting:
			l.Starting++
		case api.StateReady:
			l.Ready++
			l.InFlight += in.inFlight
			if limit > 0 {
				l.Free += limit - in.inFlight
			}
		}
	}
	if p.lastErr != nil && m.now().Before(p.nextStart) {
		l.Failing, l.RetryAt = p.lastErr, p.nextStart
	}
	return l
}

// EnsureCapacity starts instances of fn so that ready plus starting
// capacity covers demand (requests in flight plus queued), within
// scaling.max. It never waits for the start. It returns the number started
// and, while starts are backing off after failures, the last start error.
func (m *Manager) EnsureCapacity(fn string, demand int) (started int, err error) {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil {
		m.mu.Unlock()
		return 0, fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	l := m.loadLocked(p)
	want := l.Ready + l.Starting
	if per := p.fn.Scaling.Concurrency; per > 0 {
		// demand already counts the requests in flight, which occupy
		// slots of the ready instances.
		need := demand - (l.Ready+l.Starting)*per
		if need > 0 {
			want += (need + per - 1) / per
		}
	} else if want == 0 && demand > 0 {
		want = 1
	}
	var ins []*Instance
	ins, err = m.growLocked(p, want)
	m.mu.Unlock()
	m.launch(ins)
	return len(ins), err
}

// Reconcile drives fn toward desired instances at now: it starts instances
// up to desired, and stops instances that have been idle for the keep-warm
// window while more than desired are ready. Instances still starting are
// never stopped for idleness.
func (m *Manager) Reconcile(fn string, desired int, now time.Time) {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil {
		m.mu.Unlock()
		return
	}
	ins, _ := m.growLocked(p, desired)
	ins = append(ins, m.nextRolloutLocked(p)...) // retry a failed rollout after its backoff
	var stop []*Instance
	l := m.loadLocked(p)
	excess := l.Ready + l.Starting - max(desired, 0)
	// While a rollout runs, its starting instance is not capacity yet: the
	// outdated one it will replace must not be stopped for idleness in
	// favour of an instance that may never become ready.
	if outdated, starting := rolloutProgressLocked(p); outdated {
		excess -= starting
	}
	idle := p.fn.Scaling.IdleTimeout.D()
	if p.limit >= 0 && l.Ready+l.Starting > p.limit {
		idle = 0 // a budget cap: no keep-warm beyond it
		excess = max(excess, l.Ready+l.Starting-p.limit)
	}
	// Newest idle instances go first: load packs onto the oldest.
	for i := len(p.instances) - 1; i >= 0 && excess > 0; i-- {
		in := p.instances[i]
		if in.state == api.StateReady && !in.draining && in.inFlight == 0 && !in.idleSince.IsZero() && now.Sub(in.idleSince) >= idle {
			in.state = api.StateStopping
			stop = append(stop, in)
			excess--
		}
	}
	m.mu.Unlock()
	m.launch(ins)
	for _, in := range stop {
		m.stopAsync(in, fmt.Sprintf("idle for %s", idle))
	}
}

// growLocked creates starting instances until p has want (bounded by max),
// unless starts are backing off. m.mu must be held; the caller launches them.
func (m *Manager) growLocked(p *pool, want int) ([]*Instance, error) {
	if m.closed {
		return nil, nil
	}
	want = min(want, p.fn.Scaling.Max)
	if m.opts.MaxPerFunction > 0 {
		want = min(want, m.opts.MaxPerFunction)
	}
	if p.limit >= 0 {
		want = min(want, p.limit)
	}
	l := m.loadLocked(p)
	have := l.Ready + l.Starting
	if have >= want {
		if p.limit == 0 && have == 0 {
			return nil, fmt.Errorf("%w: %s", ErrBudgetExceeded, p.limitWhy)
		}
		return nil, nil
	}
	if l.Failing != nil {
		return nil, l.Failing
	}
	room := m.roomLocked()
	if room == 0 {
		return nil, m.limitErr()
	}
	if room > 0 {
		want = min(want, have+room)
	}
	var ins []*Instance
	now := m.now()
	for ; have < want; have++ {
		ins = append(ins, m.newInstanceLocked(p, now))
	}
	return ins, nil
}

// roomLocked is how many more instances MaxTotal allows now (-1: no cap).
// Every instance that may hold a process counts, whatever its function:
// starting, ready, or stopping. m.mu must be held.
func (m *Manager) roomLocked() int {
	if m.opts.MaxTotal <= 0 {
		return -1
	}
	live := 0
	for _, in := range m.byID {
		if in.state != api.StateFailed && !in.retired {
			live++
		}
	}
	return max(m.opts.MaxTotal-live, 0)
}

func (m *Manager) limitErr() error {
	return fmt.Errorf("%w: %d instances live (--max-instances)", ErrInstanceLimit, m.opts.MaxTotal)
}

// newInstanceLocked adds a starting instance of p's current version; m.mu
// must be held and the caller launches it.
func (m *Manager) newInstanceLocked(p *pool, now time.Time) *Instance {
	in := &Instance{
		id: newID(p.fn.Name), fn: p.fn.Name, version: p.version,
		state: api.StateStarting, startedAt: now, gone: make(chan struct{}),
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
	if p == nil || p.version != in.version || in.state != api.StateStarting {
		stopped := in.state == api.StateStopping // stop has accounted for it
		m.forgetLocked(in)
		m.mu.Unlock()
		if o := m.opts.Observer; o != nil && !stopped {
			o.StateChange(in.fn, in.id, api.StateStarting, "", m.now())
		}
		return
	}
	fn := p.fn
	m.mu.Unlock()

	if m.starting != nil {
		select {
		case m.starting <- struct{}{}:
			defer func() { <-m.starting }()
		case <-in.startCtx.Done():
			// Stopped (or the server shut down) while waiting its turn;
			// stop or Shutdown accounts for it.
			m.mu.Lock()
			stopped := in.state == api.StateStopping || in.retired
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
	if m.opts.LogDir != "" {
		dir := filepath.Join(m.opts.LogDir, strings.ReplaceAll(in.fn, "/", "-"))
		// The server's user only: what a model prints may be a caller's
		// input or a secret.
		if err := os.MkdirAll(dir, 0o700); err == nil {
			if f, err := os.OpenFile(filepath.Join(dir, in.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				m.mu.Lock()
				if in.retired || in.state == api.StateStopping {
					// Stopped (and accounted for) before the driver ran.
					m.mu.Unlock()
					f.Close()
					return
				}
				in.logFile, out = f, f
				m.mu.Unlock()
			}
			pruneLogs(dir, m.opts.KeepLogs)
		}
	}
	ctx, cancel := context.WithTimeout(in.startCtx, fn.StartTimeout.D())
	defer cancel()
	workdir := fn.Workdir
	di, err := m.drv.Start(ctx, driver.StartSpec{
		Function: in.fn, InstanceID: in.id,
		Runtime: fn.Runtime, Task: fn.Task, Model: fn.Model,
		Command: fn.Command, Env: fn.Env.Plain(), SecretEnv: fn.Env.Secrets(), Workdir: workdir,
		HealthPath: fn.Health, Output: out,
	})
	now := m.now()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && m.ctx.Err() == nil {
			err = fmt.Errorf("not ready within start_timeout %s: %w", fn.StartTimeout.D(), err)
		}
		m.fail(in, err, now, logger)
		return
	}

	m.mu.Lock()
	if in.retired || in.state == api.StateStopping {
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
	stopNow := m.pools[in.fn] == nil || in.state == api.StateStopping || in.draining
	var replaced, next []*Instance
	if !stopNow {
		in.state = api.StateReady
		p.failures, p.lastErr = 0, nil
		p.coldStarts++
		p.startSum += now.Sub(in.startedAt)
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
	logger.Info("instance ready", "cold_start", now.Sub(in.startedAt).Round(time.Microsecond))
	if o := m.opts.Observer; o != nil {
		prev := in.startedAt
		for _, ph := range in.phases {
			o.Phase(in.fn, ph.Name, ph.At.Sub(prev))
			prev = ph.At
		}
		o.Phase(in.fn, "total", now.Sub(in.startedAt))
		o.StateChange(in.fn, in.id, api.StateStarting, api.StateReady, now)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watch(in, di, logger)
	}()
	m.opts.Notify(in.fn)
}

// fail records a failed start or an unexpected exit and arms the backoff.
func (m *Manager) fail(in *Instance, err error, now time.Time, logger *slog.Logger) {
	var tail []string
	var se *driver.StartError
	if errors.As(err, &se) {
		tail = se.Tail
	} else if lt, ok := in.drv.(driver.LogTailer); ok && in.drv != nil {
		tail = lt.Tail(20)
	}
	m.mu.Lock()
	if in.retired || in.state == api.StateStopping {
		// A stop got there first: the exit or failed start is its doing,
		// and it reports the events.
		m.mu.Unlock()
		return
	}
	from := in.state
	in.state = api.StateFailed
	in.exitErr = err
	in.tail = tail
	m.closeLogLocked(in)
	m.retireLocked(in)
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
		if from == api.StateStarting {
			p.failures++
			backoff := m.opts.BackoffBase << min(p.failures-1, 16)
			p.nextStart = now.Add(min(backoff, m.opts.BackoffMax))
		}
		p.lastErr, p.lastErrAt = err, now
	} else {
		delete(m.byID, in.id)
	}
	m.mu.Unlock()
	logger.Error("instance failed", "state", from, "err", err)
	if o := m.opts.Observer; o != nil {
		o.StateChange(in.fn, in.id, from, api.StateFailed, now)
	}
	m.opts.Notify(in.fn)
}

// exited reports, without waiting, whether di's process has ended.
func exited(di driver.Instance) bool {
	if di == nil {
		return false
	}
	select {
	case <-di.Done():
		return true
	default:
		return false
	}
}

// watch waits for an unexpected exit of a ready instance.
func (m *Manager) watch(in *Instance, di driver.Instance, logger *slog.Logger) {
	<-di.Done()
	m.mu.Lock()
	expected := in.state == api.StateStopping
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
	from := in.state
	if from == api.StateFailed || in.retired {
		m.mu.Unlock()
		return
	}
	in.state = api.StateStopping
	di := in.drv
	m.mu.Unlock()
	if di != nil {
		if err := di.Stop(ctx); err != nil {
			m.logger.Warn("stop instance", "instance", in.id, "err", err)
		}
	} else if in.cancelStart != nil {
		in.cancelStart() // the driver abandons the start and cleans up
	}
	m.mu.Lock()
	if in.retired { // a concurrent stop got here first
		m.mu.Unlock()
		return
	}
	m.forgetLocked(in)
	m.closeLogLocked(in)
	m.mu.Unlock()
	m.logger.Info("instance stopped", "function", in.fn, "instance", in.id, "reason", why)
	if o := m.opts.Observer; o != nil {
		now := m.now()
		o.StateChange(in.fn, in.id, from, api.StateStopping, now)
		o.StateChange(in.fn, in.id, api.StateStopping, "", now)
	}
	m.opts.Notify(in.fn)
}

// forgetLocked removes in from its pool; m.mu must be held.
func (m *Manager) forgetLocked(in *Instance) {
	delete(m.byID, in.id)
	if p := m.pools[in.fn]; p != nil {
		p.instances = slices.DeleteFunc(p.instances, func(x *Instance) bool { return x == in })
	}
	m.retireLocked(in)
}

// retireLocked marks in as gone for good; m.mu must be held.
func (m *Manager) retireLocked(in *Instance) {
	if !in.retired {
		in.retired = true
		if in.gone != nil {
			close(in.gone)
		}
	}
}

func (m *Manager) closeLogLocked(in *Instance) {
	if in.logFile != nil {
		in.logFile.Close()
		in.logFile = nil
	}
}

// Shutdown stops every instance (in parallel, bounded by ctx) and waits for
// the manager's goroutines.
func (m *Manager) Shutdown(ctx context.Context) {
	m.cancel() // abandons starts in progress
	m.mu.Lock()
	m.closed = true
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

// Health reports fn's live (ready or starting) instances and, while starts
// back off after failures, the last start error and the next allowed try.
func (m *Manager) Health(fn string) (live int, retryAt time.Time, failing error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return 0, time.Time{}, fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	l := m.loadLocked(p)
	if l.Failing == nil && p.limit == 0 {
		l.Failing = fmt.Errorf("%w: %s", ErrBudgetExceeded, p.limitWhy)
	}
	if l.Failing == nil && l.Ready+l.Starting == 0 && m.roomLocked() == 0 {
		// Nothing of fn runs and nothing may start: refuse with the
		// reason rather than queue callers until their timeout.
		l.Failing, l.RetryAt = m.limitErr(), m.now().Add(time.Second)
	}
	return l.Ready + l.Starting, l.RetryAt, l.Failing
}

// Limit caps fn's instances at n below scaling.max (n < 0 lifts the cap);
// why is shown to callers refused because of it.
func (m *Manager) Limit(fn string, n int, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[fn]; p != nil {
		p.limit, p.limitWhy = n, why
	}
}

// SetObserver sets the lifecycle observer; call before the first start.
func (m *Manager) SetObserver(o Observer) { m.opts.Observer = o }

// pruneLogs deletes all but the keep newest log files in dir.
func pruneLogs(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= keep {
		return
	}
	type file struct {
		name string
		mod  time.Time
	}
	files := make([]file, 0, len(entries))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".log") {
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	for _, f := range files[min(keep, len(files)):] {
		os.Remove(filepath.Join(dir, f.name))
	}
}
