package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/cluster/share"
	"github.com/ember-run/ember/internal/errkind"
)

// Instances is what the leader reads of the instance manager.
type Instances interface {
	// Endpoints lists fn's ready instances, oldest first.
	Endpoints(fn string) []api.Endpoint
	Health(fn string) (live int, retryAt time.Time, failing error)
}

// Views is what gateways read of the leader's instances for their users
// (GET /v1/functions/{name}/instances, /logs): the leader's instance
// manager as the API shows it.
type Views interface {
	Instances(fn string) ([]api.Instance, bool)
	Instance(id string) (api.Instance, bool)
	Logs(fn string, tail int) ([]api.LogLine, error)
}

// LeaderOptions wire the leader to the controller and instance manager.
type LeaderOptions struct {
	Instances Instances
	// Views answers gateways' instance and log reads (nil: not served).
	Views Views
	// Functions lists the deployed functions.
	Functions func() []string
	// Demand receives one gateway's demand for fn (controller.DemandReports).
	Demand func(gateway, fn string, average float64, current int, at time.Time)
	// Wake is the poke: requests of fn wait at some gateway, demand in
	// flight + queued over every gateway (controller.Wake).
	Wake func(fn string, demand int)
	// Touch tells the instance manager an instance's traffic over every
	// live gateway, so keep-warm sees it.
	Touch func(fn, id string, inFlight int, lastUsed time.Time)
	// Prove starts one instance of fn's version if none runs
	// (instance.Manager.Prove); Rollout reports fn's rollout.
	Prove   func(fn string, version int64)
	Rollout func(fn string) (api.Rollout, bool)
	// Budget is fn's spend today against its budget (nil: none).
	Budget func(fn string, now time.Time) *api.BudgetStatus
	// Leading reports whether this controller leads, and else who does.
	Leading func() (ok bool, holder string)
	Live    time.Duration // a gateway is live this long after its last report (DefaultLive)
	Now     func() time.Time
	Logger  *slog.Logger
}

// Leader serves the gateways: it takes their reports and answers with
// their endpoint shares. Safe for concurrent use.
type Leader struct {
	opts LeaderOptions

	term string // random, per Leader: versions count within it

	mu       sync.Mutex // guards the following
	version  uint64
	changed  chan struct{} // closed and replaced when version moves
	ledger   *share.Ledger
	gateways map[string]*gatewayRec
	routes   map[string]int64
	touched  map[string]string // instance id → function, last told a non-zero in flight
}

type gatewayRec struct {
	last    time.Time
	reports map[string]FunctionReport
	// others counts the other gateways' route calls reported since this
	// gateway's last report, told to it in the answer (each call once).
	others map[string]int64
}

// NewLeader returns a Leader.
func NewLeader(o LeaderOptions) *Leader {
	if o.Live <= 0 {
		o.Live = DefaultLive
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Leader{opts: o, term: hex.EncodeToString(b[:]), version: 1, changed: make(chan struct{}), ledger: share.NewLedger(),
		gateways: make(map[string]*gatewayRec), routes: make(map[string]int64), touched: make(map[string]string)}
}

// Changed says capacity may have changed (an instance became ready,
// stopped or failed): waiting gateways get a new state at once.
func (l *Leader) Changed(string) {
	l.mu.Lock()
	l.bumpLocked()
	l.mu.Unlock()
}

func (l *Leader) bumpLocked() {
	l.version++
	close(l.changed)
	l.changed = make(chan struct{})
}

// Gateways returns the live gateways' ids, sorted.
func (l *Leader) Gateways() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.liveLocked(l.opts.Now())
}

// RouteCalls returns the calls of each route reported by every gateway
// since this leader started.
func (l *Leader) RouteCalls() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.routes))
	for k, v := range l.routes {
		out[k] = v
	}
	return out
}

// liveLocked drops gateways silent for longer than Live (what they held is
// free, and N changed) and returns the others sorted.
func (l *Leader) liveLocked(now time.Time) []string {
	var ids []string
	for id, g := range l.gateways {
		if now.Sub(g.last) > l.opts.Live {
			delete(l.gateways, id)
			l.ledger.Drop(id)
			l.bumpLocked()
			l.opts.Logger.Info("gateway stopped reporting", "gateway", id)
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Handle registers the leader's routes through register (the controller's
// authorization table).
func (l *Leader) Handle(register func(pattern string, h http.Handler)) {
	register("POST "+PathReport, http.HandlerFunc(l.report))
	register("GET "+PathEndpoints, http.HandlerFunc(l.endpoints))
	if l.opts.Views != nil {
		register("GET "+PathInstances, http.HandlerFunc(l.instances))
		register("GET "+PathLogs, http.HandlerFunc(l.logs))
	}
}

// instances answers GET /internal/v1/instances?function=F (F's
// instances; 404 for an unknown F) or ?id=I (one instance; 404 if none).
func (l *Leader) instances(w http.ResponseWriter, r *http.Request) {
	if !l.leading(w) {
		return
	}
	q := r.URL.Query()
	if id := q.Get("id"); id != "" {
		in, ok := l.opts.Views.Instance(id)
		if !ok {
			http.Error(w, "no instance "+id, http.StatusNotFound)
			return
		}
		writeJSON(w, in)
		return
	}
	list, ok := l.opts.Views.Instances(q.Get("function"))
	if !ok {
		http.Error(w, "no function "+q.Get("function"), http.StatusNotFound)
		return
	}
	writeJSON(w, list)
}

// logs answers GET /internal/v1/logs?function=F&tail=N (0 ≤ N ≤
// MaxLogTail).
func (l *Leader) logs(w http.ResponseWriter, r *http.Request) {
	if !l.leading(w) {
		return
	}
	q := r.URL.Query()
	tail, err := strconv.Atoi(q.Get("tail"))
	if err != nil || tail < 0 || tail > MaxLogTail {
		http.Error(w, fmt.Sprintf("tail: want an integer 0..%d, got %q", MaxLogTail, q.Get("tail")), http.StatusBadRequest)
		return
	}
	lines, err := l.opts.Views.Logs(q.Get("function"), tail)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, lines)
}

// leading answers 503 with the holder when this controller does not lead.
func (l *Leader) leading(w http.ResponseWriter) bool {
	if l.opts.Leading == nil {
		return true
	}
	ok, holder := l.opts.Leading()
	if ok {
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(NotLeader{Error: "not the leader", Holder: holder})
	return false
}

func (l *Leader) report(w http.ResponseWriter, r *http.Request) {
	if !l.leading(w) {
		return
	}
	var rep Report
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err := dec.Decode(&rep); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			http.Error(w, fmt.Sprintf("report: body over %d bytes", MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := rep.validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st := l.Apply(rep)
	writeJSON(w, st)
}

func (r Report) validate() error {
	if err := validGateway(r.Gateway); err != nil {
		return err
	}
	if len(r.Functions) > MaxFunctions {
		return fmt.Errorf("report: functions: %d over the limit of %d", len(r.Functions), MaxFunctions)
	}
	if len(r.Prove) > MaxFunctions {
		return fmt.Errorf("report: prove: %d over the limit of %d", len(r.Prove), MaxFunctions)
	}
	if len(r.Routes) > MaxRoutes {
		return fmt.Errorf("report: routes: %d over the limit of %d", len(r.Routes), MaxRoutes)
	}
	for fn, f := range r.Functions {
		if len(f.Instances) > MaxInstances {
			return fmt.Errorf("report: functions[%q].instances: %d over the limit of %d", fn, len(f.Instances), MaxInstances)
		}
		if f.InFlight < 0 || f.Queued < 0 || f.Average < 0 {
			return fmt.Errorf("report: functions[%q]: negative in_flight, queued or average", fn)
		}
	}
	return nil
}

func validGateway(id string) error {
	if id == "" || len(id) > MaxGatewayIDLen {
		return fmt.Errorf("gateway: want 1 to %d characters (got %d)", MaxGatewayIDLen, len(id))
	}
	return nil
}

// Apply records a gateway's report, feeds the controller, and returns the
// gateway's state.
func (l *Leader) Apply(rep Report) State {
	now := l.opts.Now()
	var wake []string
	l.mu.Lock()
	g := l.gateways[rep.Gateway]
	if g == nil {
		g = &gatewayRec{}
		l.gateways[rep.Gateway] = g
		l.bumpLocked() // N grows
		l.opts.Logger.Info("gateway reporting", "gateway", rep.Gateway)
	}
	g.last, g.reports = now, rep.Functions
	flight := make(map[string]int)
	for _, f := range rep.Functions {
		for id, in := range f.Instances {
			flight[id] = in.InFlight
		}
	}
	applied := rep.Applied
	if rep.Term != l.term {
		applied = 0 // a state of another leader's: it confirms nothing of ours
	}
	if l.ledger.Confirm(rep.Gateway, applied, flight) {
		l.bumpLocked() // another gateway's share may grow
	}
	live := l.liveLocked(now)
	l.routeCallsLocked(rep.Gateway, rep.Routes, live)
	totals, touch := l.totalsLocked(live)
	for fn, f := range rep.Functions {
		if f.Queued > 0 {
			wake = append(wake, fn)
		}
	}
	st := l.stateLocked(rep.Gateway, live)
	st.Routes, g.others = g.others, nil
	l.mu.Unlock()

	for fn, f := range rep.Functions {
		if l.opts.Demand != nil {
			l.opts.Demand(rep.Gateway, fn, f.Average, f.InFlight+f.Queued, now)
		}
	}
	if l.opts.Touch != nil {
		for id, t := range touch {
			l.opts.Touch(t.fn, id, t.inFlight, t.lastUsed)
		}
	}
	if l.opts.Prove != nil {
		for fn, v := range rep.Prove {
			l.opts.Prove(fn, v)
		}
	}
	if l.opts.Wake != nil {
		for _, fn := range wake {
			l.opts.Wake(fn, totals[fn])
		}
	}
	return st
}

// routeCallsLocked adds gateway from's route calls to the total and to
// what every other live gateway has yet to be told. A gateway's backlog
// holds at most MaxRoutes routes: calls of further ones are left out
// rather than grow it.
func (l *Leader) routeCallsLocked(from string, calls map[string]int64, live []string) {
	for rt, n := range calls {
		if n <= 0 {
			continue
		}
		l.routes[rt] += n
		for _, id := range live {
			g := l.gateways[id]
			if id == from {
				continue
			}
			if _, ok := g.others[rt]; !ok && len(g.others) >= MaxRoutes {
				continue
			}
			if g.others == nil {
				g.others = make(map[string]int64)
			}
			g.others[rt] += n
		}
	}
}

type touch struct {
	fn       string
	inFlight int
	lastUsed time.Time
}

// totalsLocked sums demand per function and traffic per instance over the
// live gateways; instances told busy before and quiet now are told 0.
func (l *Leader) totalsLocked(live []string) (map[string]int, map[string]touch) {
	totals := make(map[string]int)
	out := make(map[string]touch)
	for _, id := range live {
		for fn, f := range l.gateways[id].reports {
			totals[fn] += f.InFlight + f.Queued
			for iid, in := range f.Instances {
				t := out[iid]
				t.fn, t.inFlight = fn, t.inFlight+in.InFlight
				if in.LastUsed.After(t.lastUsed) {
					t.lastUsed = in.LastUsed
				}
				out[iid] = t
			}
		}
	}
	for iid, fn := range l.touched {
		if _, ok := out[iid]; !ok {
			out[iid] = touch{fn: fn}
		}
	}
	clear(l.touched)
	for iid, t := range out {
		if t.inFlight > 0 {
			l.touched[iid] = t.fn
		}
	}
	return totals, out
}

// stateLocked is gateway id's view: every function's ready endpoints with
// its shares.
func (l *Leader) stateLocked(id string, live []string) State {
	n, i := len(live), slices.Index(live, id)
	st := State{Term: l.term, Version: l.version, Gateways: n, Index: i, Functions: make(map[string]FunctionState)}
	var fns []string
	if l.opts.Functions != nil {
		fns = l.opts.Functions()
	}
	seen := make(map[string]bool)
	defer l.ledger.Retain(seen)
	for _, fn := range fns {
		var fs FunctionState
		live, retryAt, failing := l.opts.Instances.Health(fn)
		fs.Live, fs.RetryAt = live, retryAt
		if failing != nil {
			fs.Failing = failing.Error()
			var k errkind.Kinded
			if errors.As(failing, &k) {
				fs.FailingStatus, fs.FailingCode = k.ErrorKind().Status(), k.ErrorCode()
			}
		}
		if l.opts.Rollout != nil {
			if r, ok := l.opts.Rollout(fn); ok {
				fs.Rollout = &r
			}
		}
		if l.opts.Budget != nil {
			fs.Budget = l.opts.Budget(fn, l.opts.Now())
		}
		eps := l.opts.Instances.Endpoints(fn)
		sh := make([]share.Endpoint, len(eps))
		for j, e := range eps {
			sh[j] = share.Endpoint{ID: e.ID, Concurrency: e.Concurrency}
			seen[e.ID] = true
		}
		var shares []int
		if i >= 0 {
			shares = l.ledger.Grant(id, i, n, sh, l.version)
		} else {
			shares = make([]int, len(eps)) // not live: no share of anything
		}
		for j, e := range eps {
			fs.Endpoints = append(fs.Endpoints, Endpoint{ID: e.ID, Addr: e.Addr, ReadyAt: e.ReadyAt,
				Concurrency: e.Concurrency, Share: shares[j]})
		}
		st.Functions[fn] = fs
	}
	return st
}

// endpoints is the long poll: GET /internal/v1/endpoints?gateway=ID&after=V
// answers at once when the state is newer than V, else when it changes or
// after MaxPoll (or ?wait=, shorter).
func (l *Leader) endpoints(w http.ResponseWriter, r *http.Request) {
	if !l.leading(w) {
		return
	}
	q := r.URL.Query()
	id := q.Get("gateway")
	if err := validGateway(id); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var after uint64
	if q.Get("term") != l.term {
		// The gateway's version is another leader's: answer now.
	} else if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "after: want a state version (an unsigned integer)", http.StatusBadRequest)
			return
		}
		after = v
	}
	wait := MaxPoll
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxPoll {
			http.Error(w, fmt.Sprintf("wait: want a duration from 0 to %s", MaxPoll), http.StatusBadRequest)
			return
		}
		wait = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		l.mu.Lock()
		if l.version > after || ctx.Err() != nil {
			now := l.opts.Now()
			if g := l.gateways[id]; g != nil {
				g.last = now // a waiting gateway is alive
			}
			st := l.stateLocked(id, l.liveLocked(now))
			l.mu.Unlock()
			writeJSON(w, st)
			return
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return // the gateway went away
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
