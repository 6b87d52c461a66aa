// Package metering accounts for every second Ember spends: each instance's
// life split into loading, busy and idle seconds, attributed to its function
// and hardware class and priced, plus one record per request. It imports
// only the vocabulary tier (api's instance states): the instance manager
// and the gateway feed it through the observer interfaces they declare,
// and a store adapter persists what it flushes.
package metering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// Profile is what metering needs to know about a function: the hardware
// an instance occupies, how it is priced, and its budget.
type Profile struct {
	// Hardware is the class, e.g. "cpu" or "a100-40gb".
	Hardware string
	// GPUs per instance (0 for CPU classes).
	GPUs int
	// PerSecondUSD is the price of one instance-second on Hardware (the
	// hosted rate times the units one instance occupies); 0 if unpriced.
	PerSecondUSD float64
	// Budget, when set, is checked by OverBudget.
	Budget *Budget
}

// Profiles resolves a function to its profile. It is called when an
// instance is created and when a request ends, never with locks of the
// caller held by metering.
type Profiles interface {
	Profile(fn string) (Profile, bool)
}

// ProfileFunc adapts a function to Profiles.
type ProfileFunc func(fn string) (Profile, bool)

// Profile calls f.
func (f ProfileFunc) Profile(fn string) (Profile, bool) { return f(fn) }

// Store persists usage. Buckets are hourly deltas to add to the stored
// hourly and daily rollups; requests are appended. AddUsage keeps no
// reference to either slice once it returns: the Meter reuses them.
type Store interface {
	AddUsage(ctx context.Context, buckets []Bucket, reqs []Request) error
	Usage(ctx context.Context, q Query) ([]Bucket, error)
}

// Options configure a Meter.
type Options struct {
	// FlushEvery is how often Run writes to the store (default 10s).
	FlushEvery time.Duration
	// Now reads the clock for request records and flushes (default time.Now).
	// Instance events carry their own times.
	Now func() time.Time
	// MaxPendingRequests bounds request records held while the store fails;
	// older ones are dropped (their counts stay in the rollups). Default 100000.
	MaxPendingRequests int
	// NoRequestRecords keeps no per-request records: the rollups still
	// count every request, its duration, queue wait and attributed cost.
	NoRequestRecords bool
}

// Meter accounts usage. It implements the instance manager's and the
// gateway's observer interfaces; all methods are safe for concurrent use
// and never block on I/O, except Flush, Usage and Run.
type Meter struct {
	store    Store
	profiles Profiles
	logger   *slog.Logger
	opts     Options

	flushMu sync.Mutex // serialises Flush, so a read after Flush sees every delta

	mu        sync.Mutex // guards the following
	instances map[string]*instance
	pending   map[bucketKey]*Bucket // hourly deltas not yet stored
	requests  []Request
	spare     []Request     // the last flushed batch's array, reused by the next
	full      chan struct{} // Request tells Run a batch of flushBatch records is ready
	funcs     map[string]*funcTotals
}

// instance is the accounting state of one live instance.
type instance struct {
	fn, hw string
	gpus   int
	price  float64
	state  string    // StateLoading, StateBusy or StateIdle
	since  time.Time // accounted up to here
}

type bucketKey struct {
	fn, hw string
	hour   int64 // unix seconds of the hour's start
}

// funcTotals are per-function running figures: today's spend for budgets,
// and busy vs service seconds for request cost attribution.
type funcTotals struct {
	day        time.Time // UTC day the spend figures are for
	usd        float64
	gpuSeconds float64
	warned     time.Time // day a budget warning was last logged

	busy, service float64 // since the meter started

	// okService and okServed give the mean service time of answered
	// requests (2xx/3xx), for pricing by the cost model.
	okService float64
	okServed  int64

	// lastHW and lastPrice price requests that end after the function's
	// last instance stopped.
	lastHW    string
	lastPrice float64

	// live counts the function's metered instances; liveHW and
	// livePrice are those of the newest, which price its requests. A
	// per-function record keeps pricing a call independent of how many
	// instances the server runs (it scanned them all, on every call).
	live      int
	liveHW    string
	livePrice float64
}

// opened records in, a new metered instance of its function. m.mu held.
func (m *Meter) openedLocked(in *instance) {
	t := m.totalsLocked(in.fn)
	t.live++
	t.liveHW, t.livePrice = in.hw, in.price
}

// New returns a Meter that flushes to store and resolves functions with
// profiles.
func New(store Store, profiles Profiles, logger *slog.Logger, opts Options) *Meter {
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPendingRequests <= 0 {
		opts.MaxPendingRequests = 100000
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Meter{
		store: store, profiles: profiles, logger: logger, opts: opts,
		instances: make(map[string]*instance),
		pending:   make(map[bucketKey]*Bucket),
		funcs:     make(map[string]*funcTotals),
		full:      make(chan struct{}, 1),
	}
}

// Phase is part of instance.Observer; metering takes loading time from
// state changes instead.
func (m *Meter) Phase(fn, phase string, d time.Duration) {}

// StateChange is part of instance.Observer: it opens an instance's
// accounting on creation, switches loading to idle when it is ready, and
// closes it exactly at failure or removal.
func (m *Meter) StateChange(fn, id, from, to string, at time.Time) {
	var prof Profile
	var known bool
	if from == "" && (to == api.StateStarting || to == api.StateLoaded) {
		// Resolve outside the lock: the resolver may take the caller's locks.
		prof, known = m.profiles.Profile(fn)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[id]
	switch {
	case from == "" && to == api.StateStarting:
		if !known {
			prof = Profile{Hardware: "cpu"}
		}
		m.instances[id] = &instance{fn: fn, hw: prof.Hardware, gpus: prof.GPUs, price: prof.PerSecondUSD,
			state: StateLoading, since: at}
		m.openedLocked(m.instances[id])
		m.bucketLocked(fn, prof.Hardware, at).Starts++
	case from == "" && to == api.StateLoaded:
		// A worker kept loaded for fn after it scaled to zero: warm
		// capacity of fn, metered as idle, not a start.
		if !known {
			prof = Profile{Hardware: "cpu"}
		}
		m.instances[id] = &instance{fn: fn, hw: prof.Hardware, gpus: prof.GPUs, price: prof.PerSecondUSD,
			state: StateIdle, since: at}
		m.openedLocked(m.instances[id])
	case in == nil:
		// Created before the meter was attached: nothing to account.
	case to == api.StateReady:
		m.accountLocked(id, in, at)
		if in.state == StateLoading {
			// Not when a first request's Busy came in ahead of this event
			// (busy events are sent under the manager's lock, this is not).
			in.state = StateIdle
		}
	case to == "" || to == api.StateFailed:
		m.accountLocked(id, in, at)
		delete(m.instances, id)
		m.totalsLocked(in.fn).live--
	}
}

// Busy is part of instance.Observer: an instance's in-flight count went
// 0→1 (busy) or 1→0.
func (m *Meter) Busy(fn, id string, busy bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[id]
	if in == nil {
		return
	}
	m.accountLocked(id, in, at)
	if busy {
		in.state = StateBusy
		m.bucketLocked(in.fn, in.hw, at).BusyPeriods++
	} else if in.state == StateBusy {
		in.state = StateIdle
	}
}

// Request is part of gateway.Observer: it records one invocation and its
// attributed cost.
func (m *Meter) Request(fn string, status int, d, queue time.Duration, cold bool) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Request{Function: fn, At: now, Status: status, Duration: d, Queue: queue, Cold: cold}
	r.Hardware, r.CostUSD = m.requestCostLocked(fn, max(d-queue, 0), true)
	if status >= 200 && status < 400 { // answered by an instance; gateway refusals are 4xx/5xx
		t := m.totalsLocked(fn)
		t.okService += max(d-queue, 0).Seconds()
		t.okServed++
	}
	b := m.bucketLocked(fn, r.Hardware, now)
	b.Requests++
	if status >= 500 || status == 0 {
		b.Errors++
	}
	if cold {
		b.ColdStarts++
	}
	b.DurationSeconds += d.Seconds()
	b.QueueSeconds += queue.Seconds()
	b.AttributedUSD += r.CostUSD
	if m.opts.NoRequestRecords {
		return
	}
	if len(m.requests) >= m.opts.MaxPendingRequests {
		m.requests = m.requests[1:]
	}
	m.requests = append(m.requests, r)
	if len(m.requests) == flushBatch {
		select {
		case m.full <- struct{}{}:
		default: // Run has been told already
		}
	}
}

// ServiceTime returns fn's mean time on an instance per answered request
// (2xx or 3xx, queue excluded) since the meter started, and how many
// requests that is over. Refusals (401, 404, 429, a caller that gave up
// while queued...) never reached an instance and are left out.
func (m *Meter) ServiceTime(fn string) (mean time.Duration, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.funcs[fn]
	if t == nil || t.okServed == 0 {
		return 0, 0
	}
	return time.Duration(t.okService / float64(t.okServed) * float64(time.Second)), t.okServed
}

// RequestCost estimates what a request of fn that has spent service on an
// instance costs, for the Ember-Cost-USD header. It records nothing.
func (m *Meter) RequestCost(fn string, service time.Duration) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, usd := m.requestCostLocked(fn, service, false)
	return usd
}

// RequestCostByInstance is RequestCost for the function instance id
// belongs to; ok is false for an unknown instance.
func (m *Meter) RequestCostByInstance(id string, service time.Duration) (usd float64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[id]
	if in == nil {
		return 0, false
	}
	_, usd = m.requestCostLocked(in.fn, service, false)
	return usd, true
}

// requestCostLocked prices service seconds of fn at the hardware rate of
// one of its live instances (or the last seen), scaled by busy/service; when
// record is set the service time joins the ratio. m.mu must be held.
//
// E.g. concurrency 4, four 1s requests side by side: busy 1s, service 4s,
// ratio 0.25, each request is charged 0.25 instance-seconds.
func (m *Meter) requestCostLocked(fn string, service time.Duration, record bool) (hw string, usd float64) {
	var price float64
	hw = "cpu"
	t := m.totalsLocked(fn)
	if t.live > 0 {
		hw, price = t.liveHW, t.livePrice
	}
	s := service.Seconds()
	if record {
		t.service += s
	}
	ratio := 1.0
	if t.service > 0 && t.busy < t.service {
		ratio = t.busy / t.service
	}
	if price == 0 && t.lastPrice > 0 {
		hw, price = t.lastHW, t.lastPrice
	}
	return hw, s * price * ratio
}

// accountLocked charges in's current state from in.since to at, split at
// hour boundaries, and moves in.since to at. Events may arrive slightly out
// of order (state changes are reported after the manager's lock is released), so
// a time before in.since counts as in.since. m.mu must be held.
func (m *Meter) accountLocked(id string, in *instance, at time.Time) {
	if !at.After(in.since) {
		return
	}
	t := m.totalsLocked(in.fn)
	t.lastHW, t.lastPrice = in.hw, in.price
	for from := in.since; from.Before(at); {
		end := from.UTC().Truncate(time.Hour).Add(time.Hour)
		if end.After(at) {
			end = at
		}
		d := end.Sub(from).Seconds()
		b := m.bucketLocked(in.fn, in.hw, from)
		switch in.state {
		case StateLoading:
			b.Seconds.Loading += d
		case StateBusy:
			b.Seconds.Busy += d
			t.busy += d
		default:
			b.Seconds.Idle += d
		}
		gs := d * float64(in.gpus)
		usd := d * in.price
		b.GPUSeconds += gs
		b.CostUSD += usd
		t.spend(from, usd, gs)
		from = end
	}
	in.since = at
}

func (m *Meter) bucketLocked(fn, hw string, at time.Time) *Bucket {
	h := at.UTC().Truncate(time.Hour)
	k := bucketKey{fn: fn, hw: hw, hour: h.Unix()}
	b := m.pending[k]
	if b == nil {
		b = &Bucket{Function: fn, Hardware: hw, Start: h}
		m.pending[k] = b
	}
	return b
}

func (m *Meter) totalsLocked(fn string) *funcTotals {
	t := m.funcs[fn]
	if t == nil {
		t = &funcTotals{}
		m.funcs[fn] = t
	}
	return t
}

// spend adds to today's figures, starting a new day when at is in a later one.
func (t *funcTotals) spend(at time.Time, usd, gpuSeconds float64) {
	day := Truncate(at, ByDay)
	if day.After(t.day) {
		t.day, t.usd, t.gpuSeconds = day, 0, 0
	} else if day.Before(t.day) {
		return // a late event for yesterday does not count against today
	}
	t.usd += usd
	t.gpuSeconds += gpuSeconds
}

// checkpointLocked accounts every live instance up to now, so that flushed
// figures include instances that are still running. m.mu must be held.
func (m *Meter) checkpointLocked(now time.Time) {
	for id, in := range m.instances {
		m.accountLocked(id, in, now)
	}
}

// flushBatch is the record count at which Run writes the request records
// without waiting for its tick. A busy server (thousands of calls a
// second) thus writes bounded batches into one reused array, instead of
// growing a new array of tens of thousands of records every FlushEvery:
// in bench/core's profile that growth, with the page faults of fresh
// memory, was 3 µs per call (bench/README.md, sixth round). Large enough
// that a flush (one write transaction) comes every few seconds at
// thousands of calls a second: the store's writer is shared with jobs.
const flushBatch = 16384

// maxSpare bounds the array Flush keeps for reuse (records), so a burst
// while the store was down does not pin its backlog's memory.
const maxSpare = 2 * flushBatch

// Flush accounts live instances up to now and writes pending deltas and
// request records to the store. On failure they are kept for the next try.
func (m *Meter) Flush(ctx context.Context, now time.Time) error {
	return m.flush(ctx, now, true)
}

// flush is Flush; without buckets it writes only the request records and
// leaves the rollup deltas for the next full flush, so a busy server's
// early flushes add no rollup upserts.
func (m *Meter) flush(ctx context.Context, now time.Time, buckets bool) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.mu.Lock()
	var bs []Bucket
	if buckets {
		m.checkpointLocked(now)
		bs = make([]Bucket, 0, len(m.pending))
		for _, b := range m.pending {
			bs = append(bs, *b)
		}
		m.pending = make(map[bucketKey]*Bucket)
	}
	if len(bs) == 0 && len(m.requests) == 0 {
		// Nothing to write: keep both arrays (a swap here would drop one
		// each time, and an idle tick or a read of the records comes often).
		m.mu.Unlock()
		return nil
	}
	reqs := m.requests
	// The next batch fills the array the last flush wrote out, rather
	// than growing a new one from nothing (a record per call).
	m.requests, m.spare = m.spare, nil
	m.mu.Unlock()
	if err := m.store.AddUsage(ctx, bs, reqs); err != nil {
		m.mu.Lock()
		for _, b := range bs {
			m.bucketLocked(b.Function, b.Hardware, b.Start).add(b)
		}
		m.requests = append(reqs, m.requests...)
		if over := len(m.requests) - m.opts.MaxPendingRequests; over > 0 {
			m.requests = m.requests[over:]
		}
		m.mu.Unlock()
		return fmt.Errorf("metering: flush: %w", err)
	}
	// The store has written reqs and keeps no reference (Store's
	// contract), so its array can take the batch after next.
	clear(reqs)
	m.mu.Lock()
	if m.spare == nil && cap(reqs) <= maxSpare {
		m.spare = reqs[:0]
	}
	m.mu.Unlock()
	return nil
}

// Usage flushes, then reads rollups from the store, so the answer includes
// every second up to now.
func (m *Meter) Usage(ctx context.Context, q Query, now time.Time) ([]Bucket, error) {
	if err := m.Flush(ctx, now); err != nil {
		return nil, err
	}
	return m.store.Usage(ctx, q)
}

// Run loads today's spend from the store (for budgets across restarts),
// then flushes every FlushEvery until ctx ends, and once more after.
func (m *Meter) Run(ctx context.Context) error {
	now := m.opts.Now()
	if err := m.loadToday(ctx, now); err != nil {
		m.logger.Warn("metering: cannot load today's usage; budgets start from zero", "err", err)
	}
	t := time.NewTicker(m.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The run context is gone; give the last flush its own short deadline.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := m.Flush(fctx, m.opts.Now())
			cancel()
			if err != nil && !errors.Is(err, context.Canceled) {
				m.logger.Error("metering: final flush failed; usage since the last flush is lost", "err", err)
			}
			return nil
		case <-t.C:
			if err := m.Flush(ctx, m.opts.Now()); err != nil && ctx.Err() == nil {
				m.logger.Warn("metering: flush failed; will retry", "err", err)
			}
		case <-m.full:
			// Between ticks, the records only. A failure waits for the
			// tick to retry, so a down store is not hammered at the
			// call rate.
			if err := m.flush(ctx, m.opts.Now(), false); err != nil && ctx.Err() == nil {
				m.logger.Warn("metering: flush failed; will retry", "err", err)
			}
		}
	}
}

// loadToday seeds today's per-function spend from the stored day rollup.
func (m *Meter) loadToday(ctx context.Context, now time.Time) error {
	day := Truncate(now, ByDay)
	bs, err := m.store.Usage(ctx, Query{From: day, To: day.Add(24 * time.Hour), By: ByDay})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range bs {
		t := m.totalsLocked(b.Function)
		if t.day.Before(day) {
			t.day, t.usd, t.gpuSeconds = day, 0, 0
		}
		t.usd += b.CostUSD
		t.gpuSeconds += b.GPUSeconds
	}
	return nil
}

// Flush must run after the last event; Close is a convenience for callers
// that do not use Run.
func (m *Meter) Close(ctx context.Context) error { return m.Flush(ctx, m.opts.Now()) }

// RequestStore is a Store that also reads back the request records it
// keeps (both of Ember's stores are).
type RequestStore interface {
	Requests(ctx context.Context, fn string, from, to time.Time, limit int) ([]Request, error)
}

// ErrNoRequestRecords is Requests' answer when the meter keeps no request
// records (Options.NoRequestRecords) or its store cannot read them back.
var ErrNoRequestRecords = errors.New("metering: no request records are kept")

// Requests writes the request records not yet stored, then returns, for
// each name in fns ("" for every function), up to limit of its records
// that ended in [from, to), newest first; the lists are concatenated. The
// write is the records only, as between ticks (the rollups wait for the
// tick), and none when there are none pending: a caller reading in a loop
// costs the store reads, not writes.
func (m *Meter) Requests(ctx context.Context, fns []string, from, to time.Time, limit int, now time.Time) ([]Request, error) {
	rs, ok := m.store.(RequestStore)
	if m.opts.NoRequestRecords || !ok {
		return nil, ErrNoRequestRecords
	}
	if err := m.flush(ctx, now, false); err != nil {
		return nil, err
	}
	var out []Request
	for _, fn := range fns {
		got, err := rs.Requests(ctx, fn, from, to, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}
