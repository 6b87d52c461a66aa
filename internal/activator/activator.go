// Package activator holds requests while no instance slot is free. Each
// function has a bounded FIFO queue; a request that finds no free slot
// pokes the controller at once with the demand it sees (scale from zero
// without waiting for an autoscaler tick; the controller sizes it by the one
// rule, autoscaler.Decide) and waits until a slot frees, an instance becomes
// ready, its start fails, or its deadline passes.
package activator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// Errors returned by Try. The gateway maps them to HTTP statuses.
var (
	ErrQueueFull       = errors.New("queue full")
	ErrUnknownFunction = errkind.New(errkind.NotFound, "unknown_function", "unknown function")
	ErrStartFailed     = errors.New("instance failed to start")
)

// StartFailedError carries the reason an instance could not be started and
// when the next attempt is allowed.
type StartFailedError struct {
	Err     error
	RetryAt time.Time
}

func (e *StartFailedError) Error() string   { return fmt.Sprintf("%v: %v", ErrStartFailed, e.Err) }
func (e *StartFailedError) Unwrap() []error { return []error{ErrStartFailed, e.Err} }

// QueueFullError says how long the queue is.
type QueueFullError struct{ Limit int }

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("%v: %d requests already waiting", ErrQueueFull, e.Limit)
}
func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// Capacity is what the activator needs from the instance manager.
type Capacity interface {
	Function(name string) (*spec.Function, bool)
	// Endpoints lists fn's instances that can take a request now, oldest
	// first; the activator picks among them (see pick).
	Endpoints(fn string) []api.Endpoint
	// Acquire takes a slot on endpoint id, unless it can no longer take
	// one (filled, drained or died since Endpoints).
	Acquire(fn, id string) (release func(), ok bool)
	// Health reports live (ready or starting) instances and, while starts
	// back off, the last start error and when the next try is allowed.
	Health(fn string) (live int, retryAt time.Time, failing error)
}

// Picker is an optional fast path of Capacity: Endpoints, pick and
// Acquire under one lock, so a warm call takes the manager's lock once
// instead of twice. The instance manager has it; a Capacity without it is
// served by Endpoints and Acquire.
type Picker interface {
	AcquirePicked(fn string, pick func([]api.Endpoint) (api.Endpoint, bool)) (e api.Endpoint, release func(), ok bool)
}

// Waker is told, at once, that requests of fn wait for a slot (the
// controller; Knative's poke). demand is fn's in flight + queued count at
// this instant, so the wake-up is sized right the first time. Wake is called
// with the function's queue lock held: it must not call back into the
// Activator, and it must not block on a start.
type Waker interface {
	Wake(fn string, demand int)
}

// Slot is a held place on an instance, valid while Try's callback runs.
type Slot struct {
	Instance string
	Addr     string
	// Cold is true when the request waited for an instance that became
	// ready after it arrived.
	Cold    bool
	Arrived time.Time
	Queue   time.Duration
}

// Activator dispatches requests to instance slots.
type Activator struct {
	cap    Capacity
	picker Picker // cap's fast path, nil if it has none
	wake   Waker
	now    func() time.Time

	mu     sync.RWMutex // guards queues
	queues map[string]*queue
}

type queue struct {
	mu       sync.Mutex // guards the following
	waiters  []*waiter
	inFlight int
	// Time-weighted concurrency (in flight + queued) since the last Stats call.
	level    int
	integral float64 // level × seconds
	last     time.Time
	since    time.Time
	peak     int
	requests int64
}

type waiter struct {
	ch      chan grant // buffered: the dispatcher never blocks
	arrived time.Time
	granted bool
}

type grant struct {
	id, addr string
	readyAt  time.Time
	release  func()
	err      error
}

// New returns an Activator over cap that pokes wake when requests wait.
func New(cap Capacity, wake Waker) *Activator {
	a := &Activator{cap: cap, wake: wake, now: time.Now, queues: make(map[string]*queue)}
	a.picker, _ = cap.(Picker)
	return a
}

func (a *Activator) queue(fn string) *queue {
	a.mu.RLock()
	q := a.queues[fn]
	a.mu.RUnlock()
	if q != nil {
		return q
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if q = a.queues[fn]; q == nil {
		now := a.now()
		q = &queue{last: now, since: now}
		a.queues[fn] = q
	}
	return q
}

// moveLocked records a change of concurrency level; q.mu must be held.
func (q *queue) moveLocked(now time.Time, delta int) {
	q.integral += float64(q.level) * now.Sub(q.last).Seconds()
	q.last = now
	q.level += delta
	q.peak = max(q.peak, q.level)
}

// Try runs f on a slot of an instance of fn, waiting in fn's queue (and
// starting instances) when none is free. The slot is held exactly while f
// runs. Errors: ErrUnknownFunction, *QueueFullError, *StartFailedError, or
// ctx's error when the wait outlives it.
func (a *Activator) Try(ctx context.Context, fn string, f func(Slot) error) error {
	sp, ok := a.cap.Function(fn)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	q := a.queue(fn)
	arrived := a.now()

	q.mu.Lock()
	q.requests++
	if g, ok := a.grabLocked(q, fn, arrived); ok {
		q.mu.Unlock()
		return a.run(q, g, arrived, arrived, f)
	}
	if len(q.waiters) >= sp.Scaling.Queue {
		q.mu.Unlock()
		return &QueueFullError{Limit: sp.Scaling.Queue}
	}
	w := &waiter{ch: make(chan grant, 1), arrived: arrived}
	q.waiters = append(q.waiters, w)
	q.moveLocked(arrived, +1)
	// Under the queue lock, so pokes reach the controller in the order
	// their counts were taken and a smaller, older count never lands last.
	a.wake.Wake(fn, q.inFlight+len(q.waiters))
	q.mu.Unlock()

	if live, retryAt, failing := a.cap.Health(fn); live == 0 && failing != nil {
		// Nothing runs and nothing may start (backoff, budget, instance
		// limit): say why now rather than at the deadline.
		if a.abandon(q, w) {
			return &StartFailedError{Err: failing, RetryAt: retryAt}
		}
	}

	select {
	case g := <-w.ch:
		if g.err != nil {
			return g.err
		}
		return a.run(q, g, arrived, a.now(), f)
	case <-ctx.Done():
		if !a.abandon(q, w) {
			// Granted while we gave up: hand the slot back.
			if g := <-w.ch; g.release != nil {
				a.done(q, g)
			}
		}
		return ctx.Err()
	}
}

// TryNow runs f as Try does when a slot of fn is free now and no call
// waits before this one, and reports true; otherwise it does nothing and
// reports false, and the caller goes on to Try. A caller whose wait needs
// a context of its own (a deadline, with its timer) makes that context
// only when it has to wait.
func (a *Activator) TryNow(fn string, f func(Slot) error) (bool, error) {
	if _, ok := a.cap.Function(fn); !ok {
		return true, fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	q := a.queue(fn)
	arrived := a.now()
	q.mu.Lock()
	g, ok := a.grabLocked(q, fn, arrived)
	if !ok {
		q.mu.Unlock()
		return false, nil
	}
	q.requests++
	q.mu.Unlock()
	return true, a.run(q, g, arrived, arrived, f)
}

// grabLocked takes a free slot of fn for a call that arrived at arrived,
// unless calls wait before it; q.mu must be held.
func (a *Activator) grabLocked(q *queue, fn string, arrived time.Time) (grant, bool) {
	if len(q.waiters) > 0 {
		return grant{}, false
	}
	g, ok := a.acquire(fn)
	if ok {
		q.inFlight++
		q.moveLocked(arrived, +1)
	}
	return g, ok
}

// acquire takes a slot on the endpoint of fn that pick chooses. Without
// a Picker, an endpoint can fill or die between the listing and the take
// (a release of another gateway's request, a crash): then it lists again.
func (a *Activator) acquire(fn string) (grant, bool) {
	if a.picker != nil {
		e, release, ok := a.picker.AcquirePicked(fn, pick)
		if !ok {
			return grant{}, false
		}
		return grant{id: e.ID, addr: e.Addr, readyAt: e.ReadyAt, release: release}, true
	}
	for {
		e, ok := pick(a.cap.Endpoints(fn))
		if !ok {
			return grant{}, false
		}
		if release, ok := a.cap.Acquire(fn, e.ID); ok {
			return grant{id: e.ID, addr: e.Addr, readyAt: e.ReadyAt, release: release}, true
		}
	}
}

// pick is the dispatch rule: the endpoint with the fewest requests in
// flight and a free slot, ties to the oldest (eps is oldest first), so load
// packs onto old instances and excess ones fall idle and expire.
func pick(eps []api.Endpoint) (api.Endpoint, bool) {
	var best api.Endpoint
	found := false
	for _, e := range eps {
		if e.Concurrency > 0 && e.InFlight >= e.Concurrency {
			continue
		}
		if !found || e.InFlight < best.InFlight {
			best, found = e, true
		}
	}
	return best, found
}

// abandon removes w from q; it reports false when w was already granted.
func (a *Activator) abandon(q *queue, w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted {
		return false
	}
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			break
		}
	}
	w.granted = true
	q.moveLocked(a.now(), -1)
	return true
}

func (a *Activator) run(q *queue, g grant, arrived, acquired time.Time, f func(Slot) error) error {
	defer a.done(q, g)
	return f(Slot{
		Instance: g.id, Addr: g.addr,
		Cold:    g.readyAt.After(arrived),
		Arrived: arrived, Queue: acquired.Sub(arrived),
	})
}

func (a *Activator) done(q *queue, g grant) {
	q.mu.Lock()
	q.inFlight--
	q.moveLocked(a.now(), -1)
	q.mu.Unlock()
	g.release() // the manager calls Notify, which dispatches waiters
}

// Notify hands free slots of fn to waiters in arrival order. The instance
// manager calls it whenever capacity may have changed. When waiters remain
// and no instance is live because starts keep failing, they get the reason.
func (a *Activator) Notify(fn string) {
	a.mu.RLock()
	q := a.queues[fn]
	a.mu.RUnlock()
	if q == nil {
		return
	}
	q.mu.Lock()
	for len(q.waiters) > 0 {
		g, ok := a.acquire(fn)
		if !ok {
			break
		}
		w := q.waiters[0]
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
		w.granted = true
		q.inFlight++ // level unchanged: queued becomes in flight
		w.ch <- g
	}
	if len(q.waiters) == 0 {
		q.mu.Unlock()
		return
	}
	// Capacity changed and requests still wait (an instance failed or
	// stopped under them): poke with what waits now.
	a.wake.Wake(fn, q.inFlight+len(q.waiters))
	if live, retryAt, failing := a.cap.Health(fn); live == 0 && failing != nil {
		now := a.now()
		for _, w := range q.waiters {
			w.granted = true
			w.ch <- grant{err: &StartFailedError{Err: failing, RetryAt: retryAt}}
			q.moveLocked(now, -1)
		}
		q.waiters = nil
	}
	q.mu.Unlock()
}

// Stats is fn's demand since the previous call: the time-weighted average
// concurrency (in flight + queued), the peak, and the current counts.
type Stats struct {
	Average  float64
	Peak     int
	InFlight int
	Queued   int
	Requests int64
}

// Sample returns fn's Stats and starts a new averaging period.
func (a *Activator) Sample(fn string) Stats {
	q := a.queue(fn)
	now := a.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveLocked(now, 0)
	s := Stats{InFlight: q.inFlight, Queued: len(q.waiters), Peak: q.peak, Requests: q.requests}
	if d := now.Sub(q.since).Seconds(); d > 0 {
		s.Average = q.integral / d
	} else {
		s.Average = float64(q.level)
	}
	q.integral, q.since, q.peak = 0, now, q.level
	return s
}

// Forget drops fn's queue after the function is removed, failing waiters.
func (a *Activator) Forget(fn string) {
	a.mu.Lock()
	q := a.queues[fn]
	delete(a.queues, fn)
	a.mu.Unlock()
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, w := range q.waiters {
		w.granted = true
		w.ch <- grant{err: fmt.Errorf("%w %q (removed while waiting)", ErrUnknownFunction, fn)}
	}
	q.waiters = nil
}

// Demand returns fn's time-weighted average concurrency (in flight +
// queued) since the previous call and the current level; the controller
// feeds it to the autoscaler each tick.
func (a *Activator) Demand(fn string) (average float64, current int) {
	s := a.Sample(fn)
	return s.Average, s.InFlight + s.Queued
}

// Queued returns how many requests wait for a slot of fn.
func (a *Activator) Queued(fn string) int {
	a.mu.RLock()
	q := a.queues[fn]
	a.mu.RUnlock()
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}
