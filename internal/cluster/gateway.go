package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
)

// GatewayOptions wire a gateway's side of the protocol.
type GatewayOptions struct {
	ID string // this gateway's identity (its Pod name and address)
	// Leader finds the leader's address (host:port) from the Lease.
	Leader func(ctx context.Context) (string, error)
	Token  string // the cluster credential's Authorization header value
	// Demand samples fn at this gateway's activator: the time-weighted
	// concurrency since the previous call, in flight and queued now.
	Demand func(fn string) (average float64, inFlight, queued int)
	// Functions lists the functions this gateway knows (its registry).
	Functions func() []string
	// Notify tells the activator that fn's capacity changed.
	Notify func(fn string)
	// Routes, if set, returns each route's calls since the previous call;
	// Others receives the other gateways' calls the leader counted since
	// this gateway's previous report (routing.Service's Calls and Record).
	Routes   func() map[string]int64
	Others   func(map[string]int64)
	Client   *http.Client
	Interval time.Duration // report period (1 s)
	Now      func() time.Time
	Logger   *slog.Logger
}

// Gateway dispatches within the leader's shares: it is the activator's
// Capacity (with a function registry beside it) and Waker. The last state
// received keeps serving while the leader is unreachable; functions with
// no known endpoint wait in the activator's queue until one arrives.
type Gateway struct {
	opts   GatewayOptions
	kick   chan struct{} // a report is wanted now (Wake)
	joined chan struct{} // closed at the first state from a leader

	mu       sync.Mutex // guards the following
	state    State
	have     bool // state came from a leader at least once
	inFlight map[string]int
	lastUsed map[string]time.Time
	fnOf     map[string]string // instance → function, for reports
	reported map[string]bool   // functions with activity in the last report
	leader   string            // cached leader address
	prove    map[string]proof  // deploys waiting for an instance of their version
	suspect  map[string]bool   // endpoints a request could not reach, until the next state
}

type proof struct {
	version int64
	until   time.Time
}

// NewGateway returns a Gateway; Run starts its loops.
func NewGateway(o GatewayOptions) *Gateway {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: MaxPoll + 10*time.Second}
	}
	if o.Notify == nil {
		o.Notify = func(string) {}
	}
	return &Gateway{opts: o, kick: make(chan struct{}, 1), joined: make(chan struct{}), inFlight: map[string]int{},
		lastUsed: map[string]time.Time{}, fnOf: map[string]string{}, reported: map[string]bool{},
		prove: map[string]proof{}, suspect: map[string]bool{}}
}

// Share returns the number of live gateways N (1 before the leader said),
// so per-key limits can be split: each gateway allows rate/N.
func (g *Gateway) Share() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.state.Gateways, 1)
}

// Wake asks for a report now: a request of fn waits for a slot. It never
// blocks (the activator calls it under its queue lock).
func (g *Gateway) Wake(string, int) {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Endpoints lists fn's endpoints this gateway may use now: those with a
// share (or unlimited), with this gateway's in flight and its share as
// their concurrency, so the activator's pick stays within the share.
func (g *Gateway) Endpoints(fn string) []api.Endpoint {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []api.Endpoint
	for _, e := range g.state.Functions[fn].Endpoints {
		limit := e.Share
		if e.Concurrency == 0 {
			limit = 0
		} else if e.Share <= 0 {
			continue
		}
		n := g.inFlight[e.ID]
		if g.suspect[e.ID] || (limit > 0 && n >= limit) {
			continue
		}
		out = append(out, api.Endpoint{ID: e.ID, Addr: e.Addr, InFlight: n, Concurrency: limit, ReadyAt: e.ReadyAt})
	}
	return out
}

// Acquire takes a slot on endpoint id of fn within this gateway's share.
func (g *Gateway) Acquire(fn, id string) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.IndexFunc(g.state.Functions[fn].Endpoints, func(e Endpoint) bool { return e.ID == id })
	if i < 0 {
		return nil, false
	}
	e := g.state.Functions[fn].Endpoints[i]
	if g.suspect[id] || (e.Concurrency > 0 && g.inFlight[id] >= e.Share) {
		return nil, false
	}
	g.inFlight[id]++
	g.fnOf[id] = fn
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.inFlight[id]--
			if g.inFlight[id] <= 0 {
				delete(g.inFlight, id)
			}
			g.lastUsed[id] = g.opts.Now()
			g.mu.Unlock()
			g.opts.Notify(fn)
		})
	}, true
}

// Prove asks the leader, with the next report (sent now), to start one
// instance of fn's version if none runs, and again until the leader's
// rollout shows that version starting or ready (it may learn of the deploy
// from the store a moment after this gateway wrote it), for up to a minute.
func (g *Gateway) Prove(fn string, version int64) {
	g.mu.Lock()
	g.prove[fn] = proof{version: version, until: g.opts.Now().Add(time.Minute)}
	g.mu.Unlock()
	g.Wake(fn, 0)
}

// Rollout is fn's rollout as the leader last said.
func (g *Gateway) Rollout(fn string) (api.Rollout, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.state.Functions[fn].Rollout
	if r == nil {
		return api.Rollout{}, false
	}
	return *r, true
}

// Budget is fn's spend today against its budget as the leader last said
// (at most a report period old; nil without a budget): the gateway's own
// metering sees no instance, the leader's sees them all.
func (g *Gateway) Budget(fn string, _ time.Time) *api.BudgetStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.state.Functions[fn].Budget
	if b == nil {
		return nil
	}
	c := *b
	return &c
}

// Suspect stops dispatching to endpoint id until the next state from the
// leader (at most a report period, or at once when the leader has seen it
// die): a request could not reach it, so it probably died, and the
// leader, which watches it, will say.
func (g *Gateway) Suspect(id string) {
	g.mu.Lock()
	g.suspect[id] = true
	g.mu.Unlock()
}

// Health reports fn's live instances as the leader last said.
func (g *Gateway) Health(fn string) (live int, retryAt time.Time, failing error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fs := g.state.Functions[fn]
	if fs.Failing != "" {
		failing = errors.New(fs.Failing)
		if fs.FailingCode != "" {
			failing = &errkind.Error{Kind: errkind.FromStatus(fs.FailingStatus), Code: fs.FailingCode, Msg: fs.Failing}
		}
	}
	return fs.Live, fs.RetryAt, failing
}

// Joined is closed once a leader's state has arrived: until then the
// gateway knows no instance and its limits are not yet split, so it should
// not take traffic from a load balancer (/readyz).
func (g *Gateway) Joined() <-chan struct{} { return g.joined }

// Applied is the version of the state in use.
func (g *Gateway) Applied() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state.Version
}

// apply installs st when it is newer and tells the activator about every
// function whose capacity may have changed.
func (g *Gateway) apply(st State) {
	g.mu.Lock()
	// The same version may carry newer health and rollout (they move
	// without a version bump): take it; an older one is stale.
	if g.have && st.Term == g.state.Term && st.Version < g.state.Version {
		g.mu.Unlock()
		return
	}
	old, had := g.state, g.have
	g.state, g.have = st, true
	if !had {
		close(g.joined)
	}
	clear(g.suspect) // the leader's word on every endpoint is newer
	g.mu.Unlock()
	if max(st.Gateways, 1) != max(old.Gateways, 1) {
		// Every per-key and per-function limit here changes with it.
		g.opts.Logger.Info("live gateways changed; limits split over them", "gateways", max(st.Gateways, 1), "index", st.Index)
	}
	for fn := range st.Functions {
		g.opts.Notify(fn)
	}
	for fn := range old.Functions {
		if _, ok := st.Functions[fn]; !ok {
			g.opts.Notify(fn)
		}
	}
}

// report builds this gateway's report.
func (g *Gateway) report() Report {
	rep := Report{Gateway: g.opts.ID, Functions: map[string]FunctionReport{}}
	var fns []string
	if g.opts.Functions != nil {
		fns = g.opts.Functions()
	}
	g.mu.Lock()
	rep.Applied, rep.Term = g.state.Version, g.state.Term
	now := g.opts.Now()
	for fn, p := range g.prove {
		r := g.state.Functions[fn].Rollout
		if now.After(p.until) || (r != nil && r.Version >= p.version && (r.Ready+r.Starting > 0 || r.Error != "")) {
			delete(g.prove, fn)
			continue
		}
		if rep.Prove == nil {
			rep.Prove = map[string]int64{}
		}
		rep.Prove[fn] = p.version
	}
	since := map[string]map[string]InstanceReport{}
	for id, fn := range g.fnOf {
		ir := InstanceReport{InFlight: g.inFlight[id], LastUsed: g.lastUsed[id]}
		if since[fn] == nil {
			since[fn] = map[string]InstanceReport{}
		}
		since[fn][id] = ir
		if ir.InFlight == 0 {
			// Told once idle with its last use; then forgotten.
			delete(g.fnOf, id)
			delete(g.lastUsed, id)
		}
	}
	g.mu.Unlock()
	active := map[string]bool{}
	for _, fn := range fns {
		var f FunctionReport
		if g.opts.Demand != nil {
			f.Average, f.InFlight, f.Queued = g.opts.Demand(fn)
		}
		f.Instances = since[fn]
		if f.Average > 0 || f.InFlight > 0 || f.Queued > 0 || len(f.Instances) > 0 {
			active[fn] = true
		} else if !g.reported[fn] {
			continue // quiet now and last time: nothing to say
		}
		rep.Functions[fn] = f
		if len(rep.Functions) >= MaxFunctions {
			break
		}
	}
	g.reported = active
	if g.opts.Routes != nil {
		rep.Routes = g.opts.Routes()
		for rt := range rep.Routes {
			if len(rep.Routes) <= MaxRoutes {
				break
			}
			delete(rep.Routes, rt) // the leader refuses a report over the limit
		}
	}
	return rep
}

// Run reports every Interval (and at once after Wake) and long-polls the
// leader's endpoints until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.poll(ctx)
	}()
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	for {
		g.send(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		case <-g.kick:
		}
	}
}

func (g *Gateway) send(ctx context.Context) {
	rep := g.report()
	body, err := json.Marshal(rep)
	if err != nil {
		g.opts.Logger.Error("report", "err", err)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*g.opts.Interval)
	defer cancel()
	var st State
	if err := g.call(rctx, http.MethodPost, PathReport, body, &st); err != nil {
		if ctx.Err() == nil {
			g.opts.Logger.Warn("report to the leader failed; serving from the last known endpoints", "err", err)
		}
		return
	}
	g.apply(st)
	if len(st.Routes) > 0 && g.opts.Others != nil {
		g.opts.Others(st.Routes)
	}
}

// poll long-polls GET /endpoints?after= so a new ready instance reaches
// this gateway as soon as the leader sees it (the cold-start path).
func (g *Gateway) poll(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		g.mu.Lock()
		term, after := g.state.Term, g.state.Version
		g.mu.Unlock()
		q := url.Values{"gateway": {g.opts.ID}, "term": {term}, "after": {strconv.FormatUint(after, 10)}}
		var st State
		if err := g.call(ctx, http.MethodGet, PathEndpoints+"?"+q.Encode(), nil, &st); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		g.apply(st)
	}
}

// ErrNotLeader is returned when the controller called does not lead.
var ErrNotLeader = errors.New("not the leader")

// ErrNotFound is returned when the leader knows no such function or
// instance.
var ErrNotFound = errors.New("not found on the leader")

// Instances reads fn's instances from the leader, which runs them.
func (g *Gateway) Instances(ctx context.Context, fn string) ([]api.Instance, error) {
	var out []api.Instance
	err := g.call(ctx, http.MethodGet, PathInstances+"?"+url.Values{"function": {fn}}.Encode(), nil, &out)
	return out, err
}

// Instance reads one instance from the leader.
func (g *Gateway) Instance(ctx context.Context, id string) (api.Instance, error) {
	var out api.Instance
	err := g.call(ctx, http.MethodGet, PathInstances+"?"+url.Values{"id": {id}}.Encode(), nil, &out)
	return out, err
}

// Logs reads fn's last tail log lines from the leader (tail is capped at
// MaxLogTail).
func (g *Gateway) Logs(ctx context.Context, fn string, tail int) ([]api.LogLine, error) {
	var out []api.LogLine
	q := url.Values{"function": {fn}, "tail": {strconv.Itoa(min(max(tail, 0), MaxLogTail))}}
	err := g.call(ctx, http.MethodGet, PathLogs+"?"+q.Encode(), nil, &out)
	return out, err
}

func (g *Gateway) call(ctx context.Context, method, path string, body []byte, out any) error {
	addr, err := g.leaderAddr(ctx)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.opts.Token != "" {
		req.Header.Set("Authorization", g.opts.Token)
	}
	resp, err := g.opts.Client.Do(req)
	if err != nil {
		g.forgetLeader(addr)
		return fmt.Errorf("leader %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%w: %s", ErrNotFound, bytes.TrimSpace(msg))
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		g.forgetLeader(addr)
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("%s: %w: %s", addr, ErrNotLeader, bytes.TrimSpace(msg))
		}
		return fmt.Errorf("leader %s: %s: %s", addr, resp.Status, bytes.TrimSpace(msg))
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, MaxBodyBytes))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("leader %s: decode state (limit %d bytes): %w", addr, MaxBodyBytes, err)
	}
	return nil
}

func (g *Gateway) leaderAddr(ctx context.Context) (string, error) {
	g.mu.Lock()
	addr := g.leader
	g.mu.Unlock()
	if addr != "" {
		return addr, nil
	}
	addr, err := g.opts.Leader(ctx)
	if err != nil {
		return "", fmt.Errorf("find the leader: %w", err)
	}
	g.mu.Lock()
	g.leader = addr
	g.mu.Unlock()
	return addr, nil
}

func (g *Gateway) forgetLeader(addr string) {
	g.mu.Lock()
	if g.leader == addr {
		g.leader = ""
	}
	g.mu.Unlock()
}

// SetSource wires the activator, built after the Gateway (it needs the
// Gateway as its Capacity and Waker): demand samples it per function (its
// Sample), functions lists the registry, notify is its Notify. Call it
// before Run.
func (g *Gateway) SetSource(demand func(fn string) (average float64, inFlight, queued int), functions func() []string, notify func(fn string)) {
	g.opts.Demand, g.opts.Functions, g.opts.Notify = demand, functions, notify
}

// SetRoutes wires the routing service, built after the Gateway: calls
// returns each route's calls here since its previous call, others records
// the other gateways' calls in the route windows. Call it before Run.
func (g *Gateway) SetRoutes(calls func() map[string]int64, others func(map[string]int64)) {
	g.opts.Routes, g.opts.Others = calls, others
}
