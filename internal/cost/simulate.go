package cost

import (
	"container/heap"
	"math"
	"time"

	"github.com/ember-run/ember/internal/autoscaler"
	"github.com/ember-run/ember/internal/keepalive"
)

// tickInterval is how often the simulated controller samples concurrency
// (once per window bucket: an unsampled bucket would count as zero demand)
// and asks the decider, as the platform's controller does.
const tickInterval = 1.0

// simEpoch anchors simulated seconds to a time.Time for the decider; any
// fixed instant works, since the decider only compares times.
var simEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Simulate computes a month of usage by replaying arrivals (generated from
// the shape with the seed, or the trace) through a model of Ember's instance
// manager that asks the real autoscaler decider how many instances to keep.
//
// What it models, as the platform does it: a request goes to the ready
// instance with the fewest in flight (ties to the oldest) that has a free
// slot; failing that it waits for a starting instance with a free slot, or
// starts one (a cold start) when below Max, or queues. Every tick the
// controller records in-flight plus queued concurrency and calls Decide; it
// starts instances up to Decision.Desired, and stops an instance idle for
// IdleTimeout only while the count is above Desired (newest first).
func Simulate(in Inputs) (Usage, error) {
	in = in.withDefaults()
	if err := in.validate(); err != nil {
		return Usage{}, err
	}
	var arrivals, durations []float64
	var horizon float64
	if in.Trace != nil {
		arrivals, durations = in.Trace.Arrivals, in.Trace.Durations
		// Leave time for the last requests and the keep-warm tail to finish.
		horizon = in.Trace.Span
	} else {
		horizon = simHorizon(in)
		arrivals = generate(in, horizon)
	}
	s := newSim(in)
	u := s.run(arrivals, durations, horizon)
	// Scale to a month by rate: the simulated span stands for the month.
	return u.scale(Month.Seconds() / horizon), nil
}

type evKind uint8

const (
	evReady evKind = iota
	evComplete
	evExpire
	evTick
	evPolicy // a learned window opens or closes (idle_timeout: auto)
)

type event struct {
	at    float64
	kind  evKind
	inst  *simInstance
	stamp float64 // evExpire: the idle-since it was armed for
	seq   uint64  // FIFO among equal times, for determinism
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simInstance struct {
	id        int
	ready     bool
	stopped   bool
	inflight  int
	waiting   []float64 // service times of requests waiting for this starting instance
	startedAt float64
	since     float64 // last accounting point
	idleSince float64
	busyFrom  float64
}

type sim struct {
	in       Inputs
	c        int
	idle     float64 // idle timeout seconds
	q        eventQueue
	seq      uint64
	nextID   int
	insts    []*simInstance // alive, oldest first
	queued   []float64      // service times waiting for any slot (Max reached)
	inflight int
	waiting  int // requests waiting on starting instances

	window   *autoscaler.Window
	decision autoscaler.Decision
	ticking  bool

	// auto is the learned keep-warm policy's state (nil: fixed window).
	auto *simAuto

	u        Usage
	peak     int
	busySegs []float64
	lifeSegs []float64
}

func newSim(in Inputs) *sim {
	s := &sim{
		in:     in,
		c:      max(in.Concurrency, 1),
		idle:   in.IdleTimeout.Seconds(),
		window: autoscaler.NewWindow(time.Second, autoscaler.DefaultStableWindow),
		u:      Usage{Engine: EngineSimulate},
	}
	if in.KeepWarm != nil {
		// The policy's raised min holds the first instance; instances
		// beyond it are held by the windows' Hold (see idleFor).
		s.auto = &simAuto{idleSince: -1}
		s.auto.windows = keepalive.Choose(&s.auto.hist, in.KeepWarm.Config, in.KeepWarm.Prices)
	}
	return s
}

// simAuto is the controller's learner (controller/keepwarm.go) in
// simulated seconds: idle times from the end of a busy period to the next
// arrival feed the histogram; the windows raise min to 1.
type simAuto struct {
	hist      keepalive.Histogram
	windows   keepalive.Windows
	idleSince float64 // -1 while busy or before the first request
}

// minNow is the effective minimum: the spec's, raised to 1 while the
// learned window holds.
func (s *sim) minNow(now float64) int {
	m := s.in.Min
	if a := s.auto; a != nil && a.idleSince >= 0 && s.in.Max > 0 && a.windows.Warm(dur(now-a.idleSince)) {
		m = max(m, 1)
	}
	return m
}

// idleFor is how long an idle instance is kept while the decider wants
// fewer: the fixed window; under auto, for the only instance nothing (the
// learned window holds it through min) and, while there are more, the
// windows' Hold.
func (s *sim) idleFor() float64 {
	if s.auto == nil {
		return s.idle
	}
	return s.auto.windows.IdleHold(len(s.insts)).Seconds()
}

// dur converts simulated seconds to a Duration, rounded to the nanosecond:
// truncating would put a window's closing event, scheduled at
// idleSince+window in floating point, a nanosecond inside the window.
func dur(secs float64) time.Duration {
	return time.Duration(math.Round(secs * float64(time.Second)))
}

// busyAgain records an arrival that ends an idle gap.
func (s *sim) busyAgain(now float64) {
	a := s.auto
	if a == nil || a.idleSince < 0 {
		return
	}
	a.hist.Add(dur(now - a.idleSince))
	a.windows = keepalive.Choose(&a.hist, s.in.KeepWarm.Config, s.in.KeepWarm.Prices)
	a.idleSince = -1
}

// quiet records the end of a busy period and schedules the moments the
// learned windows open and close.
func (s *sim) quiet(now float64) {
	a := s.auto
	if a == nil {
		return
	}
	a.idleSince = now
	pre, ka := a.windows.PreWarm.Seconds(), a.windows.KeepAlive.Seconds()
	if pre > 0 && ka > 0 {
		s.push(event{at: now + pre, kind: evPolicy, stamp: now})
	}
	s.push(event{at: now + pre + ka, kind: evPolicy, stamp: now})
}

// policy applies a window opening or closing, as the controller's next tick
// would: decide, start up to desired, stop what is no longer wanted.
func (s *sim) policy(now, stamp float64) {
	if s.auto == nil || s.auto.idleSince != stamp {
		return // traffic came back meanwhile
	}
	s.decide(now)
	for len(s.insts) < s.decision.Desired {
		s.start(now)
	}
	s.expire(now)
	// After the window closes the decider may still hold an instance (its
	// newest sample was not yet zero): look again at the next tick until it
	// lets go, as the controller's ticks would. Without this an instance
	// held at the closing moment stayed up until the next request.
	w := s.auto.windows
	if now-stamp >= (w.PreWarm+w.KeepAlive).Seconds()-1e-9 && len(s.insts) > s.minNow(now) {
		s.push(event{at: now + tickInterval, kind: evPolicy, stamp: stamp})
	}
}

func (s *sim) push(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *sim) at(t float64) time.Time {
	return simEpoch.Add(time.Duration(t * float64(time.Second)))
}

// account closes inst's current state up to now.
func (s *sim) account(inst *simInstance, now float64) {
	d := now - inst.since
	inst.since = now
	switch {
	case !inst.ready:
		s.u.Seconds.Loading += d
	case inst.inflight > 0:
		s.u.Seconds.Busy += d
	default:
		s.u.Seconds.Idle += d
	}
}

func (s *sim) run(arrivals, durations []float64, horizon float64) Usage {
	// The function was deployed before the period: its controller has been
	// sampling (zeros), so the first request is not averaged over a window
	// that starts with it.
	s.window.Record(s.at(-autoscaler.DefaultStableWindow.Seconds()), 0)
	for i := 0; i < s.in.Min; i++ {
		inst := s.start(0)
		inst.ready = true // provisioned before the period starts
	}
	i := 0
	for {
		nextArr := math.Inf(1)
		if i < len(arrivals) {
			nextArr = arrivals[i]
		}
		nextEv := math.Inf(1)
		if len(s.q) > 0 {
			nextEv = s.q[0].at
		}
		now := min(nextArr, nextEv)
		if now >= horizon || math.IsInf(now, 1) {
			break
		}
		if nextArr <= nextEv {
			d := s.in.SecondsPerRequest
			if durations != nil {
				d = durations[i]
			}
			i++
			s.arrive(now, d)
			continue
		}
		e := heap.Pop(&s.q).(event)
		switch e.kind {
		case evReady:
			s.onReady(e.inst, now)
		case evComplete:
			s.onComplete(e.inst, now)
		case evExpire:
			inst := e.inst
			if inst.stopped || !inst.ready || inst.inflight > 0 || inst.idleSince != e.stamp {
				continue
			}
			if due := inst.idleSince + s.idleFor(); now < due-1e-9 {
				// The learned hold grew since this was armed.
				s.push(event{at: due, kind: evExpire, inst: inst, stamp: e.stamp})
				continue
			}
			s.decide(now)
			s.expire(now)
			if !inst.stopped && len(s.insts) > s.minNow(now) {
				// Held by the decider (traffic still flows): look again in a
				// second, as the controller's next tick would.
				s.push(event{at: now + tickInterval, kind: evExpire, inst: inst, stamp: e.stamp})
			}
		case evTick:
			s.tick(now)
		case evPolicy:
			s.policy(now, e.stamp)
		}
	}
	for _, inst := range s.insts {
		s.account(inst, horizon)
		if inst.inflight > 0 {
			s.busySegs = append(s.busySegs, horizon-inst.busyFrom)
		}
		s.lifeSegs = append(s.lifeSegs, horizon-inst.startedAt)
	}
	s.u.PeakInstances = s.peak
	s.u.BusyPeriods = float64(len(s.busySegs))
	s.u.busySegs, s.u.lifeSegs, s.u.segScale = s.busySegs, s.lifeSegs, 1
	if s.u.Requests > 0 {
		s.u.ColdStartRate = s.u.ColdStarts / s.u.Requests
	}
	return s.u
}

func (s *sim) concurrency() float64 {
	return float64(s.inflight + s.waiting + len(s.queued))
}

func (s *sim) arrive(now, d float64) {
	s.u.Requests++
	if s.concurrency() == 0 {
		s.busyAgain(now)
	}
	s.ensureTicking(now)
	defer func() { s.window.Record(s.at(now), s.concurrency()) }()

	// Least-loaded ready instance with a free slot; ties to the oldest,
	// which comes first in s.insts.
	var best *simInstance
	for _, inst := range s.insts {
		if inst.ready && inst.inflight < s.c && (best == nil || inst.inflight < best.inflight) {
			best = inst
		}
	}
	if best != nil {
		s.begin(best, now, d)
		return
	}
	// A request with no free slot waits on a cold start: an instance already
	// starting with room, or a new one.
	s.u.ColdStarts++
	for _, inst := range s.insts {
		if !inst.ready && len(inst.waiting) < s.c {
			inst.waiting = append(inst.waiting, d)
			s.waiting++
			return
		}
	}
	if len(s.insts) < s.in.Max {
		inst := s.start(now)
		inst.waiting = append(inst.waiting, d)
		s.waiting++
		return
	}
	s.queued = append(s.queued, d)
}

// start begins a new instance's cold start at now.
func (s *sim) start(now float64) *simInstance {
	s.nextID++
	inst := &simInstance{id: s.nextID, startedAt: now, since: now}
	s.insts = append(s.insts, inst)
	s.peak = max(s.peak, len(s.insts))
	s.u.Starts++
	s.push(event{at: now + s.in.ColdStart.Seconds(), kind: evReady, inst: inst})
	return inst
}

func (s *sim) begin(inst *simInstance, now, d float64) {
	s.account(inst, now)
	if inst.inflight == 0 {
		inst.busyFrom = now
	}
	inst.inflight++
	s.inflight++
	s.push(event{at: now + d, kind: evComplete, inst: inst})
}

func (s *sim) onReady(inst *simInstance, now float64) {
	if inst.stopped {
		return
	}
	s.account(inst, now)
	inst.ready = true
	for _, d := range inst.waiting {
		s.waiting--
		s.begin(inst, now, d)
	}
	inst.waiting = nil
	s.fill(inst, now)
	if inst.inflight == 0 {
		s.goIdle(inst, now)
	}
}

// fill gives inst's free slots to requests queued for any slot.
func (s *sim) fill(inst *simInstance, now float64) {
	for inst.inflight < s.c && len(s.queued) > 0 {
		d := s.queued[0]
		s.queued = s.queued[1:]
		s.begin(inst, now, d)
	}
}

func (s *sim) onComplete(inst *simInstance, now float64) {
	s.account(inst, now)
	inst.inflight--
	s.inflight--
	if inst.inflight == 0 {
		s.busySegs = append(s.busySegs, now-inst.busyFrom)
	}
	s.fill(inst, now)
	if inst.inflight == 0 {
		s.goIdle(inst, now)
	}
	if s.concurrency() == 0 {
		s.quiet(now)
	}
}

func (s *sim) goIdle(inst *simInstance, now float64) {
	inst.idleSince = now
	s.push(event{at: now + s.idleFor(), kind: evExpire, inst: inst, stamp: now})
}

func (s *sim) ensureTicking(now float64) {
	if s.ticking {
		return
	}
	s.ticking = true
	// Ticks sit on a fixed grid, as a controller's ticker would.
	next := math.Floor(now/tickInterval)*tickInterval + tickInterval
	s.push(event{at: next, kind: evTick})
}

// tick samples concurrency and asks the decider. Ticks run only while
// requests are in flight or queued: a bucket with no sample averages as 0,
// exactly like a sample of 0, so skipping quiet seconds changes no decision,
// and expiry events ask the decider themselves.
func (s *sim) tick(now float64) {
	s.window.Record(s.at(now), s.concurrency())
	s.decide(now)
	for len(s.insts) < s.decision.Desired {
		s.start(now)
	}
	s.expire(now)
	if s.concurrency() == 0 {
		s.ticking = false
		return
	}
	s.push(event{at: now + tickInterval, kind: evTick})
}

func (s *sim) decide(now float64) {
	idle := s.in.IdleTimeout
	if s.auto != nil {
		idle = 0
	}
	s.decision = autoscaler.Decide(autoscaler.Params{
		Min:          s.minNow(now),
		Max:          s.in.Max,
		Concurrency:  s.c,
		Target:       s.in.Target,
		IdleTimeout:  idle,
		Ready:        len(s.insts),
		PanicSince:   s.decision.PanicSince,
		PanicDesired: s.decision.PanicDesired,
	}, s.window, s.at(now))
}

// expire stops instances idle for the idle timeout, newest first, while
// there are more than the decider wants.
func (s *sim) expire(now float64) {
	for j := len(s.insts) - 1; j >= 0 && len(s.insts) > s.decision.Desired; j-- {
		inst := s.insts[j]
		if !inst.ready || inst.inflight > 0 || now-inst.idleSince < s.idleFor()-1e-9 {
			continue
		}
		s.account(inst, now)
		inst.stopped = true
		s.lifeSegs = append(s.lifeSegs, now-inst.startedAt)
		s.insts = append(s.insts[:j], s.insts[j+1:]...)
	}
}
