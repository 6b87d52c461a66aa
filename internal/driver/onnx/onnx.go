// Package onnx is the built-in ONNX runtime driver. An onnx instance is a
// separate process — the ember binary itself in worker mode (`ember worker
// onnx`) — started through the process driver, so a crash in a model cannot
// take the server down and the instance is metered like any other.
//
// Two things cut its cold start:
//   - a pool of pre-started workers with ONNX Runtime initialised and no
//     model loaded (Options.PoolSize); a start takes one, POSTs /load, and
//     pays only for model loading; the pool refills in the background;
//   - the worker maps model files (mmap) and caches graph-optimised models,
//     so loading reads from the page cache.
//
// Either way the worker's finer phases (runtime_loaded, sessions_created,
// warmup_done, ...) are merged into the instance's phases.
package onnx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// Options configure the driver.
type Options struct {
	// Executable is the ember binary that runs `worker onnx`.
	Executable string
	// CacheDir is the model and runtime cache the workers use.
	CacheDir string
	// ORTLib, if set, is the ONNX Runtime library (no download).
	ORTLib string
	// PoolSize pre-started, model-less workers are kept ready (0 = none).
	PoolSize int
	// Threads per ONNX Runtime session (0 = one per core).
	Threads int
	// Host is the address workers listen on ("" = the worker's default,
	// 127.0.0.1); a worker in a Pod listens on 0.0.0.0.
	Host string
	// Poolable, if set, must also accept a spec for a pooled worker to
	// serve it: the kube driver's pooled Pods carry no resources or
	// volumes, so functions that ask for them get a Pod of their own.
	Poolable func(driver.StartSpec) bool
	// Loaded is how many workers with a model loaded are kept after their
	// function scaled to zero (the loaded pool; 0 = none): the function's
	// next start within its keep-warm window takes its worker back and
	// skips session creation. The oldest is stopped when a new one
	// would exceed it.
	Loaded int
}

// PoolFunction is the name pooled workers are reported under while they
// wait: no function owns them yet, and the colon keeps it apart from every
// function name. Once taken, a worker is its function's instance.
const PoolFunction = "ember:onnx-pool"

// PoolObserver is told of pooled workers' lifecycle (metering, metrics),
// with the states and conventions of instance.Observer's StateChange.
type PoolObserver interface {
	StateChange(fn, id, from, to string, at time.Time)
}

// Driver starts onnx instances.
type Driver struct {
	proc   driver.Driver
	opts   Options
	logger *slog.Logger
	client *http.Client

	ctx    context.Context // ends on Close; parent of pool starts
	cancel context.CancelFunc
	wg     sync.WaitGroup

	obs PoolObserver // nil: none

	// token tells this driver's pooled workers from another server's
	// sharing a namespace (Pods): their ids are PoolFunction-token-serial.
	token string

	mu      sync.Mutex // guards the following
	pool    []pooled
	filling int
	serial  int
	loaded  []*loadedWorker // oldest parked first
}

// loadedWorker is a function's worker kept with its model loaded after
// the function scaled to zero. It is reported to the observer under
// (fn, id) in state api.StateLoaded, so it is metered to its function.
type loadedWorker struct {
	fn, key string
	id      string
	w       driver.Instance // the process instance
	timer   *time.Timer     // ends it when the keep-warm window is over
}

// PhasePoolHit marks a start that took its function's loaded worker back:
// no process start, no model load, no session creation.
const PhasePoolHit = "pool_hit"

// pooled is a waiting worker and the id it is reported under.
type pooled struct {
	driver.Instance
	id    string
	taken chan struct{} // closed when it leaves the pool alive
}

// SetObserver sets the pool's lifecycle observer; call before Warm.
func (d *Driver) SetObserver(o PoolObserver) { d.obs = o }

func (d *Driver) report(id, from, to string) { d.reportFn(PoolFunction, id, from, to) }

func (d *Driver) reportFn(fn, id, from, to string) {
	if d.obs != nil {
		d.obs.StateChange(fn, id, from, to, time.Now())
	}
}

// New returns a driver that starts workers through proc.
func New(proc driver.Driver, logger *slog.Logger, opts Options) *Driver {
	ctx, cancel := context.WithCancel(context.Background())
	var b [4]byte
	rand.Read(b[:])
	return &Driver{proc: proc, opts: opts, logger: logger, ctx: ctx, cancel: cancel,
		token: hex.EncodeToString(b[:]), client: &http.Client{Timeout: 5 * time.Minute}}
}

func (d *Driver) baseArgs() []string {
	args := []string{d.opts.Executable, "worker", "onnx", "--port", "${PORT}"}
	if d.opts.Host != "" {
		args = append(args, "--host", d.opts.Host)
	}
	if d.opts.CacheDir != "" {
		args = append(args, "--cache-dir", d.opts.CacheDir)
	}
	if d.opts.ORTLib != "" {
		args = append(args, "--ort-lib", d.opts.ORTLib)
	}
	if d.opts.Threads > 0 {
		args = append(args, "--threads", strconv.Itoa(d.opts.Threads))
	}
	return args
}

// Start starts (or specialises a pooled) worker for s.Task and s.Model.
func (d *Driver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	if err := d.Validate(s); err != nil {
		return nil, &driver.StartError{Reason: strings.ReplaceAll(err.Error(), "\n", "; "), Err: err}
	}
	begin := time.Now()
	// A running worker cannot take another environment or directory, so a
	// function that sets either always gets a fresh one.
	poolable := len(s.Env) == 0 && len(s.SecretEnv) == 0 && s.Workdir == "" &&
		(d.opts.Poolable == nil || d.opts.Poolable(s))
	key := s.Task + "\x00" + s.Model + "\x00" + s.TaskOptions
	var w driver.Instance
	if poolable {
		if lw := d.takeLoaded(s.Function, key); lw != nil {
			if r, ok := lw.(redirector); ok {
				r.Redirect(s.Output)
			}
			phases := []driver.Phase{{Name: PhasePoolHit, At: begin}, {Name: driver.PhaseReady, At: time.Now()}}
			return d.parkable(&phased{Instance: lw, phases: phases}, s.Function, key), nil
		}
		w = d.take()
	}
	if w != nil {
		defer d.refillSoon()
		in, err := d.specialise(ctx, w, s, begin)
		if err == nil {
			return d.parkable(in, s.Function, key), nil
		}
		d.logger.Warn("pooled worker failed to load; starting a fresh one", "function", s.Function, "err", err)
		w.Stop(context.WithoutCancel(ctx))
	}
	s.Command = append(d.baseArgs(), "--task", s.Task, "--model-dir", s.Model)
	if s.TaskOptions != "" {
		s.Command = append(s.Command, "--options", s.TaskOptions)
	}
	s.HealthPath = "/health"
	in, err := d.proc.Start(ctx, s)
	if err != nil {
		return nil, err
	}
	return d.parkable(d.withWorkerPhases(ctx, in, nil, false), s.Function, key), nil
}

// redirector is a process instance whose output can be re-pointed.
type redirector interface{ Redirect(w io.Writer) }

// specialise loads the model into a pooled worker.
func (d *Driver) specialise(ctx context.Context, w driver.Instance, s driver.StartSpec, begin time.Time) (driver.Instance, error) {
	if r, ok := w.(redirector); ok {
		r.Redirect(s.Output) // from here on its lines are this instance's log
	}
	load := map[string]any{"task": s.Task, "model_dir": s.Model}
	if s.TaskOptions != "" {
		load["options"] = json.RawMessage(s.TaskOptions)
	}
	body, _ := json.Marshal(load)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.Addr()+"/load", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("load model into pooled worker: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("load model into pooled worker: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	if r, ok := w.(relabeler); ok {
		// Now the function's: a Pod keeps its pool labels otherwise, and
		// a new leader would delete it as the pool's leftover.
		if err := r.Relabel(ctx, s.Labels); err != nil {
			return nil, err
		}
	}
	pre := []driver.Phase{{Name: "pool_acquired", At: begin}}
	return d.withWorkerPhases(ctx, w, pre, true), nil
}

// relabeler is an instance whose runtime labels can change (a Pod).
type relabeler interface {
	Relabel(ctx context.Context, l driver.Labels) error
}

// phased is an instance whose phases include the worker's own.
type phased struct {
	driver.Instance
	phases []driver.Phase

	// Set by parkable, for Park: nil d means it cannot be parked.
	d       *Driver
	fn, key string
	parked  chan struct{} // closed by Park
	done    chan struct{} // closed when the worker exits or is parked
	endOnce sync.Once     // closes done
}

func (p *phased) end() { p.endOnce.Do(func() { close(p.done) }) }

func (p *phased) Phases() []driver.Phase { return p.phases }

// Done closes when the worker exits, or when it is parked: to its
// function's instance manager it has stopped then.
func (p *phased) Done() <-chan struct{} {
	if p.done == nil {
		return p.Instance.Done()
	}
	return p.done
}

// Err is the worker's exit, or, once parked, driver.ErrExited.
func (p *phased) Err() error {
	if p.parked != nil {
		select {
		case <-p.parked:
			return fmt.Errorf("%w: kept loaded for the next start", driver.ErrExited)
		default:
		}
	}
	return p.Instance.Err()
}

// parkable makes in parkable (driver.Parker) when the loaded pool is on.
// Its goroutine ends when the worker exits or is parked.
func (d *Driver) parkable(in driver.Instance, fn, key string) driver.Instance {
	p, ok := in.(*phased)
	if !ok || d.opts.Loaded <= 0 {
		return in
	}
	p.d, p.fn, p.key = d, fn, key
	p.parked, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-p.Instance.Done():
			p.end()
		case <-p.parked:
		}
	}()
	return p
}

// Park keeps the worker, model loaded, for fn's next start within keep
// (driver.Parker). The oldest loaded worker is stopped when the pool is
// full. Park is called once, by the stop of the function's last instance.
func (p *phased) Park(keep time.Duration) bool {
	d := p.d
	if d == nil || keep <= 0 {
		return false
	}
	select {
	case <-p.Instance.Done():
		return false
	case <-p.parked:
		return false
	default:
	}
	lw := &loadedWorker{fn: p.fn, key: p.key, w: p.Instance}
	d.mu.Lock()
	if d.ctx.Err() != nil {
		d.mu.Unlock()
		return false
	}
	d.serial++
	lw.id = fmt.Sprintf("%s~loaded-%d", p.fn, d.serial)
	var evict []*loadedWorker
	for len(d.loaded) >= d.opts.Loaded {
		evict = append(evict, d.loaded[0])
		d.loaded = d.loaded[1:]
	}
	d.loaded = append(d.loaded, lw)
	// Reported under mu, before takeLoaded can report it leaving.
	d.reportFn(lw.fn, lw.id, "", api.StateLoaded)
	lw.timer = time.AfterFunc(keep, func() { d.expire(lw) })
	d.mu.Unlock()
	close(p.parked)
	p.end()
	if r, ok := p.Instance.(redirector); ok {
		r.Redirect(nil) // the stopped instance's log is closed; keep only the tail
	}
	for _, e := range evict {
		d.stopLoaded(e, "evicted by a newer loaded worker")
	}
	return true
}

// takeLoaded removes fn's live loaded worker for key, or returns nil.
func (d *Driver) takeLoaded(fn, key string) driver.Instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.loaded) - 1; i >= 0; i-- {
		lw := d.loaded[i]
		if lw.fn != fn || lw.key != key {
			continue
		}
		d.loaded = slices.Delete(d.loaded, i, i+1)
		lw.timer.Stop() // expire finds it gone if it fired meanwhile
		d.reportFn(lw.fn, lw.id, api.StateLoaded, "")
		select {
		case <-lw.w.Done():
			continue // died while kept: look for another
		default:
		}
		return lw.w
	}
	return nil
}

// expire stops lw once its keep-warm window is over, unless it was taken.
func (d *Driver) expire(lw *loadedWorker) {
	d.mu.Lock()
	i := slices.Index(d.loaded, lw)
	if i >= 0 {
		d.loaded = slices.Delete(d.loaded, i, i+1)
	}
	d.mu.Unlock()
	if i >= 0 {
		d.stopLoaded(lw, "keep-warm window over")
	}
}

// Release stops fn's loaded workers (driver.Releaser): its budget forced
// it to zero, or it was redeployed or deleted. It does not block.
func (d *Driver) Release(fn string) {
	d.mu.Lock()
	var out []*loadedWorker
	d.loaded = slices.DeleteFunc(d.loaded, func(lw *loadedWorker) bool {
		if lw.fn == fn {
			out = append(out, lw)
			return true
		}
		return false
	})
	d.mu.Unlock()
	for _, lw := range out {
		d.stopLoaded(lw, "released")
	}
}

// stopLoaded stops a loaded worker no longer in d.loaded, in the
// background, and closes its accounting.
func (d *Driver) stopLoaded(lw *loadedWorker, why string) {
	lw.timer.Stop()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.reportFn(lw.fn, lw.id, api.StateLoaded, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lw.w.Stop(ctx)
		d.logger.Info("loaded onnx worker stopped", "function", lw.fn, "worker", lw.id, "reason", why)
	}()
}

// LoadedFor reports how many loaded workers fn has kept.
func (d *Driver) LoadedFor(fn string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, lw := range d.loaded {
		if lw.fn == fn {
			n++
		}
	}
	return n
}

// Tail passes through the process instance's log tail.
func (p *phased) Tail(n int) []string {
	if lt, ok := p.Instance.(driver.LogTailer); ok {
		return lt.Tail(n)
	}
	return nil
}

// withWorkerPhases merges GET /phases into the instance's phases: the
// driver's spawned and listening, the worker's runtime and model phases,
// and ready last. A pooled worker keeps only what happened after pre.
func (d *Driver) withWorkerPhases(ctx context.Context, in driver.Instance, pre []driver.Phase, pooled bool) driver.Instance {
	var wp []struct {
		Name string `json:"name"`
		At   int64  `json:"at"`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Addr()+"/phases", nil)
	if resp, err := d.client.Do(req); err == nil {
		json.NewDecoder(resp.Body).Decode(&wp)
		resp.Body.Close()
	}
	now := time.Now()
	phases := slices.Clone(pre)
	if !pooled {
		for _, p := range in.Phases() {
			if p.Name != driver.PhaseReady {
				phases = append(phases, p)
			}
		}
	}
	for _, p := range wp {
		switch p.Name {
		case "process_start", "listening":
			continue // the driver's spawned/listening say the same from outside
		case "runtime_loaded":
			if pooled {
				continue // paid before this start
			}
		}
		phases = append(phases, driver.Phase{Name: p.Name, At: time.Unix(0, p.At)})
	}
	phases = append(phases, driver.Phase{Name: driver.PhaseReady, At: now})
	slices.SortStableFunc(phases, func(a, b driver.Phase) int { return a.At.Compare(b.At) })
	return &phased{Instance: in, phases: phases}
}

// take removes a live pooled worker, or returns nil.
func (d *Driver) take() driver.Instance {
	d.mu.Lock()
	var w pooled
	for len(d.pool) > 0 && w.Instance == nil {
		w = d.pool[0]
		d.pool = d.pool[1:]
		select {
		case <-w.Done():
			w = pooled{} // died while waiting: its watcher reports it
		default:
			close(w.taken)
		}
	}
	d.mu.Unlock()
	if w.Instance == nil {
		return nil
	}
	d.report(w.id, "ready", "") // from now on its function's instance
	return w.Instance
}

// watch reports a waiting worker that dies, drops it from the pool and
// starts a replacement; it ends when the worker is taken or the pool
// closes.
func (d *Driver) watch(w pooled) {
	select {
	case <-w.Done():
	case <-w.taken:
		return
	case <-d.ctx.Done():
		return
	}
	d.mu.Lock()
	select {
	case <-w.taken: // taken as it died; its function's instance now
		d.mu.Unlock()
		return
	default:
	}
	d.pool = slices.DeleteFunc(d.pool, func(p pooled) bool { return p.id == w.id })
	d.mu.Unlock()
	d.logger.Warn("a pooled onnx worker exited while waiting; replacing it", "worker", w.id, "err", w.Err())
	d.report(w.id, "ready", "failed")
	d.refillSoon()
}

// Warm fills the pool up to PoolSize in the background. The app calls it
// once an onnx function exists, so servers without one pay nothing.
func (d *Driver) Warm() { d.refill() }

// refillSoon refills the pool after a pause: a replacement worker starting
// at once would compete for CPU with the instance just specialised and its
// first request, which is what the pool is there to make fast.
func (d *Driver) refillSoon() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTimer(RefillDelay)
		defer t.Stop()
		select {
		case <-t.C:
			d.refill()
		case <-d.ctx.Done():
		}
	}()
}

// RefillDelay is how long the pool waits before replacing a taken worker.
const RefillDelay = 2 * time.Second

func (d *Driver) refill() {
	d.mu.Lock()
	need := d.opts.PoolSize - len(d.pool) - d.filling
	d.filling += max(need, 0)
	d.mu.Unlock()
	for range max(need, 0) {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			w, err := d.startPooled()
			d.mu.Lock()
			d.filling--
			if err == nil {
				if d.ctx.Err() == nil {
					d.pool = append(d.pool, w)
					// Reported ready once it can be taken (and under mu,
					// so before take reports it leaving): an observer that
					// sees it ready can count on the next start taking it.
					d.report(w.id, "starting", "ready")
					d.wg.Add(1)
					go func(w pooled) {
						defer d.wg.Done()
						d.watch(w)
					}(w)
					w.Instance = nil
				}
			}
			d.mu.Unlock()
			if err != nil && d.ctx.Err() == nil {
				d.logger.Warn("could not pre-start a pooled onnx worker", "err", err)
			}
			if w.Instance != nil { // the pool closed while it started
				w.Stop(context.Background())
				d.report(w.id, "starting", "")
			}
		}()
	}
}

func (d *Driver) startPooled() (pooled, error) {
	d.mu.Lock()
	d.serial++
	id := fmt.Sprintf("%s-%s-%d", PoolFunction, d.token, d.serial)
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
	defer cancel()
	d.report(id, "", "starting")
	w, err := d.proc.Start(ctx, driver.StartSpec{
		Function: PoolFunction, InstanceID: id, Runtime: "onnx",
		Labels:     driver.Labels{Function: PoolFunction, Version: 1, Instance: id},
		Command:    append(d.baseArgs(), "--pool"),
		HealthPath: "/live",
	})
	if err != nil {
		d.report(id, "starting", "failed")
		return pooled{id: id}, err
	}
	return pooled{Instance: w, id: id, taken: make(chan struct{})}, nil
}

// Close stops the pooled workers.
func (d *Driver) Close(ctx context.Context) {
	d.cancel()
	d.mu.Lock()
	loaded := d.loaded
	d.loaded = nil
	d.mu.Unlock()
	for _, lw := range loaded {
		d.stopLoaded(lw, "server shutting down")
	}
	d.wg.Wait()
	d.mu.Lock()
	pool := d.pool
	d.pool = nil
	d.mu.Unlock()
	for _, w := range pool {
		w.Stop(ctx)
		d.report(w.id, "ready", "")
	}
}

// PoolReady reports how many pooled workers wait.
func (d *Driver) PoolReady() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pool)
}

var (
	_ driver.Driver   = (*Driver)(nil)
	_ driver.Releaser = (*Driver)(nil)
	_ driver.Parker   = (*phased)(nil)
)
var _ driver.LogTailer = (*phased)(nil)
