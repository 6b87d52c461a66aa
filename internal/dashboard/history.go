package dashboard

import (
	"encoding/json"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// Bounds of what the Recorder keeps in memory. Worst case, about
// 256 functions × 600 samples × ~100 B ≈ 15 MB, plus 64 routes × 600.
const (
	maxFunctions     = 256
	maxRoutes        = 64
	historyLen       = 600 // samples: 10 minutes at one a second
	maxTracks        = 24  // instances per function on the timeline
	maxSegs          = 64  // state segments per instance
	maxColdStarts    = 8   // waterfalls per function
	maxLatencies     = 1024
	maxBucketLatency = 256 // latencies kept per second for its percentiles
	maxVersions      = 20
	nowWindow        = time.Minute // "p50/p99 now" are over the last minute
)

// sample is one second of a function.
type sample struct {
	At                        time.Time
	Ready, Starting           int
	InFlight, Queued, Desired int
	RPS, P50, P99, QueueMs    float64
	Reason                    string
}

// track is one instance's states over time (starting, idle, busy, stopping).
type track struct {
	ID    string
	Segs  []tseg
	Ended bool
	Final string // stopped or failed
}

type tseg struct {
	State    string
	From, To time.Time // To zero: still in it
}

type coldStart struct {
	Instance string
	At       time.Time
	Phases   []phase
}

type version struct {
	Version int64
	At      time.Time
}

type latency struct {
	At          time.Time
	Ms, QueueMs float64
}

type fnHistory struct {
	samples  []sample
	tracks   []*track
	starts   []coldStart
	seen     map[string]bool // instances whose cold start is recorded
	versions []version
	recent   []latency // ring of the last maxLatencies requests, in no order
	next     int       // where the next one goes once recent is full

	// the second being counted
	n                 int
	ms, queueMs       []float64
	lastSampleRequest time.Time
}

type routeSample struct {
	At        time.Time
	QPS       float64
	Threshold float64
	Choice    string
	Reason    string
	// Persistent and Serverless are the targets' prices per hour at
	// QPS for a cost-policy route (NaN when the cost model could not
	// price them, or the route has another policy).
	Persistent, Serverless float64
}

// observedRoute is a route as sampled, with its targets' prices when its
// policy is cost.
type observedRoute struct {
	Route api.Route
	// Priced says Persistent and Serverless hold prices.
	Priced                 bool
	Persistent, Serverless float64
}

// Recorder keeps the bounded history the pages draw: it observes the
// instance manager's and the gateway's events (app fans them out to it) and
// a sample of every function and route once a second (Dashboard.Run).
type Recorder struct {
	mu     sync.Mutex // guards the following
	fns    map[string]*fnHistory
	routes map[string][]routeSample
	// changed is closed and replaced after each sample: SSE streams wait
	// on it instead of polling.
	changed chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{fns: map[string]*fnHistory{}, routes: map[string][]routeSample{}, changed: make(chan struct{})}
}

// fnLocked returns fn's history, creating it while under the bound;
// nil past it. r.mu must be held.
func (r *Recorder) fnLocked(fn string) *fnHistory {
	h := r.fns[fn]
	if h == nil {
		if len(r.fns) >= maxFunctions {
			return nil
		}
		h = &fnHistory{seen: map[string]bool{}}
		r.fns[fn] = h
	}
	return h
}

// StateChange records an instance's move from one state to another.
func (r *Recorder) StateChange(fn, id, from, to string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.fnLocked(fn)
	if h == nil {
		return
	}
	t := h.trackLocked(id)
	switch to {
	case api.StateReady:
		t.enter("idle", at)
	case "stopped", api.StateFailed:
		t.close(at)
		t.Ended, t.Final = true, to
	default:
		t.enter(to, at)
	}
}

// Busy records an instance taking its first request or finishing its last.
func (r *Recorder) Busy(fn, id string, busy bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.fnLocked(fn)
	if h == nil {
		return
	}
	t := h.trackLocked(id)
	if t.Ended {
		return
	}
	if busy {
		t.enter("busy", at)
	} else {
		t.enter("idle", at)
	}
}

// Request records one call's latency and queue wait.
func (r *Recorder) Request(fn string, status int, d, queue time.Duration, cold bool) {
	r.requestAt(fn, d, queue, time.Now())
}

func (r *Recorder) requestAt(fn string, d, queue time.Duration, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.fnLocked(fn)
	if h == nil {
		return
	}
	ms, qms := float64(d)/1e6, float64(queue)/1e6
	h.n++
	if len(h.ms) < maxBucketLatency {
		h.ms, h.queueMs = append(h.ms, ms), append(h.queueMs, qms)
	}
	// Overwrite the oldest in place once full: this runs on every call,
	// and shifting the window down cost a 32 KiB copy each time.
	l := latency{At: at, Ms: ms, QueueMs: qms}
	if len(h.recent) < maxLatencies {
		h.recent = append(h.recent, l)
	} else {
		h.recent[h.next] = l
		h.next = (h.next + 1) % maxLatencies
	}
}

func (h *fnHistory) trackLocked(id string) *track {
	for _, t := range h.tracks {
		if t.ID == id {
			return t
		}
	}
	t := &track{ID: id}
	h.tracks = append(h.tracks, t)
	if len(h.tracks) > maxTracks {
		// Drop the oldest ended instance (or the oldest of all).
		drop := 0
		for i, o := range h.tracks {
			if o.Ended {
				drop = i
				break
			}
		}
		delete(h.seen, h.tracks[drop].ID)
		h.tracks = slices.Delete(h.tracks, drop, drop+1)
	}
	return t
}

func (t *track) close(at time.Time) {
	if n := len(t.Segs); n > 0 && t.Segs[n-1].To.IsZero() {
		t.Segs[n-1].To = at
	}
}

func (t *track) enter(state string, at time.Time) {
	if n := len(t.Segs); n > 0 && t.Segs[n-1].To.IsZero() && t.Segs[n-1].State == state {
		return
	}
	if n := len(t.Segs); n > 0 && t.Segs[n-1].To.IsZero() && t.Segs[n-1].From.Equal(at) {
		t.Segs[n-1].State = state // no zero-length segment (ready and busy at once)
		return
	}
	t.close(at)
	t.Segs = append(t.Segs, tseg{State: state, From: at})
	if len(t.Segs) > maxSegs {
		t.Segs = slices.Delete(t.Segs, 0, len(t.Segs)-maxSegs)
	}
}

// observed is what the sampler read of one function.
type observed struct {
	Function  api.Function
	Status    api.FunctionStatus
	Instances []api.Instance
}

// Sample closes the current second of every function seen and wakes the
// live streams. now is the sample time.
func (r *Recorder) Sample(now time.Time, fns []observed, routes []observedRoute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[string]bool{}
	for _, o := range fns {
		live[o.Function.Name] = true
		h := r.fnLocked(o.Function.Name)
		if h == nil {
			continue
		}
		s := sample{At: now, Ready: o.Status.Ready, Starting: o.Status.Starting, InFlight: o.Status.InFlight,
			Queued: o.Status.Queued, Desired: o.Status.Desired, Reason: o.Status.Reason}
		secs := 1.0
		if !h.lastSampleRequest.IsZero() {
			secs = max(now.Sub(h.lastSampleRequest).Seconds(), 0.001)
		}
		h.lastSampleRequest = now
		s.RPS = float64(h.n) / secs
		s.P50, s.P99 = percentile(h.ms, 0.5), percentile(h.ms, 0.99)
		s.QueueMs = mean(h.queueMs)
		h.n, h.ms, h.queueMs = 0, h.ms[:0], h.queueMs[:0]
		h.samples = append(h.samples, s)
		if len(h.samples) > historyLen {
			h.samples = slices.Delete(h.samples, 0, len(h.samples)-historyLen)
		}
		if n := len(h.versions); n == 0 || h.versions[n-1].Version != o.Function.Version {
			h.versions = append(h.versions, version{Version: o.Function.Version, At: o.Function.UpdatedAt})
			if len(h.versions) > maxVersions {
				h.versions = slices.Delete(h.versions, 0, 1)
			}
		}
		for _, in := range o.Instances {
			if in.ReadyAt == nil || h.seen[in.ID] {
				continue
			}
			h.seen[in.ID] = true
			cs := coldStart{Instance: in.ID, At: *in.ReadyAt}
			for _, p := range in.PhaseOrder {
				cs.Phases = append(cs.Phases, phase{Name: p, Ms: in.Phases[p]})
			}
			h.starts = append(h.starts, cs)
			if len(h.starts) > maxColdStarts {
				h.starts = slices.Delete(h.starts, 0, 1)
			}
		}
	}
	for name := range r.fns {
		if !live[name] {
			delete(r.fns, name) // deleted functions leave no history behind
		}
	}
	seenRoutes := map[string]bool{}
	for _, o := range routes {
		rt := o.Route
		seenRoutes[rt.Name] = true
		hist, ok := r.routes[rt.Name]
		if !ok && len(r.routes) >= maxRoutes {
			continue
		}
		s := routeSample{At: now, Threshold: routeThreshold(rt), Persistent: math.NaN(), Serverless: math.NaN()}
		if o.Priced {
			s.Persistent, s.Serverless = o.Persistent, o.Serverless
		}
		if rt.Status != nil {
			s.QPS, s.Choice, s.Reason = rt.Status.QPS, rt.Status.Choice, rt.Status.Reason
		}
		hist = append(hist, s)
		if len(hist) > historyLen {
			hist = slices.Delete(hist, 0, len(hist)-historyLen)
		}
		r.routes[rt.Name] = hist
	}
	for name := range r.routes {
		if !seenRoutes[name] {
			delete(r.routes, name)
		}
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// Changed is closed at the next sample.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// fnView is a copy of one function's history, safe to read unlocked.
type fnView struct {
	Samples    []sample
	Tracks     []track
	ColdStarts []coldStart
	Versions   []version
	P50, P99   float64 // over the last minute
	QueueMs    float64
	Requests   int // in the last minute
}

func (r *Recorder) function(fn string, now time.Time) fnView {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.fns[fn]
	if h == nil {
		return fnView{}
	}
	v := fnView{Samples: slices.Clone(h.samples), ColdStarts: slices.Clone(h.starts), Versions: slices.Clone(h.versions)}
	for _, t := range h.tracks {
		c := *t
		c.Segs = slices.Clone(t.Segs)
		v.Tracks = append(v.Tracks, c)
	}
	var ms, qms []float64
	for _, l := range h.recent {
		if now.Sub(l.At) <= nowWindow {
			ms, qms = append(ms, l.Ms), append(qms, l.QueueMs)
		}
	}
	v.Requests = len(ms)
	v.P50, v.P99, v.QueueMs = percentile(ms, 0.5), percentile(ms, 0.99), mean(qms)
	return v
}

func (r *Recorder) route(name string) []routeSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routes[name])
}

// percentile is the nearest-rank q-quantile of xs (0 when empty); xs is
// not changed.
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}

// routeThreshold reads policy.threshold from a route's stored spec; 10,
// the route package's default, when unset.
func routeThreshold(rt api.Route) float64 {
	var s struct {
		Policy struct {
			Threshold float64 `json:"threshold"`
		} `json:"policy"`
	}
	if json.Unmarshal(rt.Spec, &s) != nil || s.Policy.Threshold <= 0 {
		return 10
	}
	return s.Policy.Threshold
}
