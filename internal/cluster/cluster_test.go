package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
)

// fakeInstances is the manager as the leader reads it.
type fakeInstances struct {
	mu  sync.Mutex
	eps map[string][]api.Endpoint
}

func (f *fakeInstances) Endpoints(fn string) []api.Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Endpoint(nil), f.eps[fn]...)
}

func (f *fakeInstances) Health(fn string) (int, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.eps[fn]), time.Time{}, nil
}

func (f *fakeInstances) set(fn string, eps ...api.Endpoint) {
	f.mu.Lock()
	f.eps[fn] = eps
	f.mu.Unlock()
}

type wakes struct {
	mu  sync.Mutex
	got map[string]int
	ch  chan string
}

func (w *wakes) Wake(fn string, demand int) {
	w.mu.Lock()
	w.got[fn] = demand
	w.mu.Unlock()
	select {
	case w.ch <- fn:
	default:
	}
}

func newLeader(t *testing.T, inst *fakeInstances, w *wakes, leading func() (bool, string)) (*Leader, *httptest.Server) {
	t.Helper()
	l := NewLeader(LeaderOptions{Instances: inst, Functions: func() []string { return []string{"sim"} },
		Wake: w.Wake, Leading: leading})
	mux := http.NewServeMux()
	l.Handle(func(p string, h http.Handler) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return l, srv
}

// TestColdPath: a request waits at a gateway (Wake) → the gateway reports
// at once → the leader pokes the controller with the demand → an instance
// becomes ready → the gateway's long poll delivers it and the activator is
// notified, without waiting for the next report.
func TestColdPath(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	w := &wakes{got: map[string]int{}, ch: make(chan string, 1)}
	l, srv := newLeader(t, inst, w, nil)
	notified := make(chan string, 16)
	queued := 0
	var mu sync.Mutex
	g := NewGateway(GatewayOptions{ID: "gw-a",
		Leader:    func(context.Context) (string, error) { return strings.TrimPrefix(srv.URL, "http://"), nil },
		Functions: func() []string { return []string{"sim"} },
		Demand: func(string) (float64, int, int) {
			mu.Lock()
			defer mu.Unlock()
			return 0, 0, queued
		},
		Notify:   func(fn string) { notified <- fn },
		Interval: time.Hour, // only the first report and Wake's
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	select {
	case <-g.Joined():
		t.Fatal("joined before any state from a leader")
	default:
	}
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-notified // the first state (no endpoints yet)
	select {
	case <-g.Joined(): // the gateway may now report ready
	case <-time.After(10 * time.Second):
		t.Fatal("not joined after the first state")
	}

	mu.Lock()
	queued = 3
	mu.Unlock()
	g.Wake("sim", 3)
	select {
	case fn := <-w.ch:
		if fn != "sim" {
			t.Fatalf("woke %q", fn)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leader was not poked after Wake")
	}
	w.mu.Lock()
	if w.got["sim"] != 3 {
		t.Errorf("poke demand = %d, want 3 (queued at the one gateway)", w.got["sim"])
	}
	w.mu.Unlock()
	if eps := g.Endpoints("sim"); len(eps) != 0 {
		t.Fatalf("endpoints before any instance: %v", eps)
	}

	inst.set("sim", api.Endpoint{ID: "i1", Addr: "127.0.0.1:9", Concurrency: 4})
	l.Changed("sim")
	deadline := time.After(10 * time.Second)
	for len(g.Endpoints("sim")) == 0 {
		select {
		case <-notified:
		case <-deadline:
			t.Fatal("the long poll did not deliver the new endpoint")
		}
	}
	eps := g.Endpoints("sim")
	if eps[0].ID != "i1" || eps[0].Concurrency != 4 {
		t.Errorf("endpoint = %+v, want i1 with the whole concurrency 4 (one gateway)", eps[0])
	}
	if g.Share() != 1 {
		t.Errorf("Share() = %d, want 1", g.Share())
	}
}

// TestSharesAcrossGateways: two gateways on one leader split an instance's
// concurrency 4 as 2+2 once both have confirmed, and each gateway's
// Acquire stops at its share.
func TestSharesAcrossGateways(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	inst.set("sim", api.Endpoint{ID: "i1", Addr: "a", Concurrency: 4})
	w := &wakes{got: map[string]int{}, ch: make(chan string, 1)}
	l, _ := newLeader(t, inst, w, nil)
	gA := NewGateway(GatewayOptions{ID: "a"})
	gB := NewGateway(GatewayOptions{ID: "b"})
	// Reports in a fixed order, as Run would send them.
	step := func(g *Gateway) { g.apply(l.Apply(g.report())) }
	step(gA) // alone: 4
	if s := gA.state.Functions["sim"].Endpoints[0].Share; s != 4 {
		t.Fatalf("alone: share %d, want 4", s)
	}
	var held []func()
	for range 4 {
		r, ok := gA.Acquire("sim", "i1")
		if !ok {
			t.Fatal("a: acquire within its share refused")
		}
		held = append(held, r)
	}
	step(gB) // joins: a may still hold 4
	if s := gB.state.Functions["sim"].Endpoints[0].Share; s != 0 {
		t.Fatalf("b joined while a holds 4: share %d, want 0", s)
	}
	step(gA) // a learns N=2: share 2, still 4 in flight
	if _, ok := gA.Acquire("sim", "i1"); ok {
		t.Fatal("a: acquire over its new share allowed")
	}
	for _, r := range held[:3] {
		r()
	}
	step(gA) // confirms with 1 in flight
	step(gB)
	if s := gB.state.Functions["sim"].Endpoints[0].Share; s != 2 {
		t.Fatalf("after a shrank: b's share %d, want 2", s)
	}
	if gA.Share() != 2 || gB.Share() != 2 {
		t.Errorf("Share() = %d, %d, want 2, 2", gA.Share(), gB.Share())
	}
	if l.ledger.Held("i1") > 4 {
		t.Errorf("held %d > 4", l.ledger.Held("i1"))
	}
}

func TestNotLeaderAnswers503WithHolder(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	w := &wakes{got: map[string]int{}, ch: make(chan string, 1)}
	_, srv := newLeader(t, inst, w, func() (bool, string) { return false, "ctl-0_10.0.0.1:8080" })
	resp, err := http.Post(srv.URL+PathReport, "application/json", strings.NewReader(`{"gateway":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var nl NotLeader
	_ = json.NewDecoder(resp.Body).Decode(&nl)
	if resp.StatusCode != http.StatusServiceUnavailable || nl.Holder != "ctl-0_10.0.0.1:8080" {
		t.Errorf("got %d %+v, want 503 naming the holder", resp.StatusCode, nl)
	}
}

func TestReportBounds(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	w := &wakes{got: map[string]int{}, ch: make(chan string, 1)}
	_, srv := newLeader(t, inst, w, nil)
	tests := []struct {
		name, body, want string
		status           int
	}{
		{"no gateway", `{}`, "gateway: want 1 to 253 characters", 400},
		{"negative", `{"gateway":"g","functions":{"f":{"queued":-1}}}`, `functions["f"]: negative`, 400},
		{"too big", `{"gateway":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, "body over 4194304 bytes", 413},
		{"bad json", `{"gateway":`, "report:", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+PathReport, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, b, tt.status, tt.want)
			}
		})
	}
}

// TestSilentGatewayDropped: a gateway that stops reporting stops counting
// after Live, and the other gets the whole instance.
func TestSilentGatewayDropped(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	inst.set("sim", api.Endpoint{ID: "i1", Addr: "a", Concurrency: 4})
	now := time.Unix(1000, 0)
	l := NewLeader(LeaderOptions{Instances: inst, Functions: func() []string { return []string{"sim"} },
		Now: func() time.Time { return now }})
	l.Apply(Report{Gateway: "a"})
	st := l.Apply(Report{Gateway: "b"})
	if st.Gateways != 2 || st.Index != 1 {
		t.Fatalf("N=%d index=%d, want 2, 1", st.Gateways, st.Index)
	}
	now = now.Add(2 * time.Second)
	l.Apply(Report{Gateway: "b", Applied: st.Version, Term: st.Term})
	now = now.Add(2 * time.Second) // a silent for 4 s > 3 s
	st = l.Apply(Report{Gateway: "b", Applied: st.Version, Term: st.Term})
	if st.Gateways != 1 || st.Index != 0 {
		t.Fatalf("after a went silent: N=%d index=%d, want 1, 0", st.Gateways, st.Index)
	}
	if s := st.Functions["sim"].Endpoints[0].Share; s != 4 {
		t.Errorf("b's share = %d, want 4", s)
	}
}

// TestTouchSumsGateways: the manager is told each instance's in flight over
// every gateway, and 0 once they are quiet.
func TestTouchSumsGateways(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	got := map[string]int{}
	l := NewLeader(LeaderOptions{Instances: inst, Functions: func() []string { return nil },
		Touch: func(fn, id string, n int, _ time.Time) { got[id] = n }})
	busy := func(n int) map[string]FunctionReport {
		return map[string]FunctionReport{"sim": {InFlight: n, Instances: map[string]InstanceReport{"i1": {InFlight: n}}}}
	}
	l.Apply(Report{Gateway: "a", Functions: busy(2)})
	l.Apply(Report{Gateway: "b", Functions: busy(1)})
	if got["i1"] != 3 {
		t.Fatalf("in flight told = %d, want 3 (2 + 1)", got["i1"])
	}
	l.Apply(Report{Gateway: "a"})
	l.Apply(Report{Gateway: "b"})
	if got["i1"] != 0 {
		t.Errorf("after both went quiet: %d, want 0", got["i1"])
	}
}

// TestNewLeaderTermReplacesState: after a failover the new leader counts
// versions from 1; a gateway that held version 50 of the old term takes
// the new leader's state anyway (else it would keep dispatching to the
// dead leader's instances).
func TestNewLeaderTermReplacesState(t *testing.T) {
	g := NewGateway(GatewayOptions{ID: "a"})
	g.apply(State{Term: "old", Version: 50, Functions: map[string]FunctionState{"sim": {Endpoints: []Endpoint{{ID: "dead", Share: 4, Concurrency: 4}}}}})
	g.apply(State{Term: "old", Version: 49}) // stale within a term: ignored
	if len(g.Endpoints("sim")) != 1 {
		t.Fatal("an older version of the same term replaced the state")
	}
	g.apply(State{Term: "new", Version: 2, Functions: map[string]FunctionState{"sim": {}}})
	if eps := g.Endpoints("sim"); len(eps) != 0 {
		t.Errorf("after the new term: endpoints %v, want none (the dead leader's are gone)", eps)
	}
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	l := NewLeader(LeaderOptions{Instances: inst})
	st := l.Apply(Report{Gateway: "a", Applied: 99, Term: "old"})
	if st.Term == "old" || st.Term == "" {
		t.Errorf("leader term %q, want its own", st.Term)
	}
}

// TestProveThroughTheLeader: a deploy that waits, made through a gateway,
// has the leader prove the version; the gateway repeats the ask until the
// leader's rollout shows that version starting.
func TestProveThroughTheLeader(t *testing.T) {
	inst := &fakeInstances{eps: map[string][]api.Endpoint{}}
	var proved []int64
	rollout := api.Rollout{Function: "sim", Version: 1}
	l := NewLeader(LeaderOptions{Instances: inst, Functions: func() []string { return []string{"sim"} },
		Prove:   func(fn string, v int64) { proved = append(proved, v) },
		Rollout: func(string) (api.Rollout, bool) { return rollout, true }})
	g := NewGateway(GatewayOptions{ID: "a"})
	g.Prove("sim", 2)
	g.apply(l.Apply(g.report())) // the leader still has version 1
	g.apply(l.Apply(g.report()))
	if len(proved) != 2 {
		t.Fatalf("proved %v, want the ask repeated while the leader lags", proved)
	}
	rollout = api.Rollout{Function: "sim", Version: 2, Starting: 1}
	g.apply(l.Apply(g.report())) // asked once more; the answer shows it starting
	g.apply(l.Apply(g.report()))
	if len(proved) != 3 || proved[2] != 2 {
		t.Errorf("proved %v, want three asks for version 2, then none", proved)
	}
	if r, ok := g.Rollout("sim"); !ok || r.Version != 2 || r.Starting != 1 {
		t.Errorf("Rollout = %+v, %v; want the leader's", r, ok)
	}
}

// TestSuspectUntilNextState: an endpoint a request could not reach is not
// dispatched to until the leader's next state.
func TestSuspectUntilNextState(t *testing.T) {
	g := NewGateway(GatewayOptions{ID: "a"})
	st := State{Term: "t", Version: 3, Functions: map[string]FunctionState{"sim": {Endpoints: []Endpoint{
		{ID: "x", Concurrency: 4, Share: 4}, {ID: "y", Concurrency: 4, Share: 4}}}}}
	g.apply(st)
	g.Suspect("x")
	if eps := g.Endpoints("sim"); len(eps) != 1 || eps[0].ID != "y" {
		t.Fatalf("endpoints %v, want only y", eps)
	}
	if _, ok := g.Acquire("sim", "x"); ok {
		t.Fatal("acquired a suspect endpoint")
	}
	g.apply(st) // the leader still lists x
	if len(g.Endpoints("sim")) != 2 {
		t.Error("x still suspect after the leader's next state")
	}
}

type fakeViews struct{}

func (fakeViews) Instances(fn string) ([]api.Instance, bool) {
	if fn != "sim" {
		return nil, false
	}
	return []api.Instance{{ID: "sim-1", Function: "sim", State: "ready"}}, true
}

func (fakeViews) Instance(id string) (api.Instance, bool) {
	return api.Instance{ID: id, Function: "sim"}, id == "sim-1"
}

func (fakeViews) Logs(fn string, tail int) ([]api.LogLine, error) {
	lines := make([]api.LogLine, tail)
	for i := range lines {
		lines[i] = api.LogLine{Instance: "sim-1", Line: fmt.Sprint(i)}
	}
	return lines, nil
}

// TestViewsThroughTheLeader: a gateway reads instances and logs from the
// leader, where they run; what the leader does not know is ErrNotFound,
// and the tail is bounded.
func TestViewsThroughTheLeader(t *testing.T) {
	l := NewLeader(LeaderOptions{Instances: &fakeInstances{eps: map[string][]api.Endpoint{}}, Views: fakeViews{}})
	mux := http.NewServeMux()
	l.Handle(func(p string, h http.Handler) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	g := NewGateway(GatewayOptions{ID: "a", Client: srv.Client(),
		Leader: func(context.Context) (string, error) { return strings.TrimPrefix(srv.URL, "http://"), nil }})
	ctx := context.Background()
	if list, err := g.Instances(ctx, "sim"); err != nil || len(list) != 1 || list[0].ID != "sim-1" {
		t.Errorf("Instances(sim) = %+v, %v", list, err)
	}
	if _, err := g.Instances(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Instances(nope) err = %v, want ErrNotFound", err)
	}
	if in, err := g.Instance(ctx, "sim-1"); err != nil || in.Function != "sim" {
		t.Errorf("Instance(sim-1) = %+v, %v", in, err)
	}
	if _, err := g.Instance(ctx, "sim-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Instance(sim-2) err = %v, want ErrNotFound", err)
	}
	if lines, err := g.Logs(ctx, "sim", 3); err != nil || len(lines) != 3 || lines[2].Line != "2" {
		t.Errorf("Logs(sim, 3) = %+v, %v", lines, err)
	}
	if lines, err := g.Logs(ctx, "sim", MaxLogTail+5); err != nil || len(lines) != MaxLogTail {
		t.Errorf("Logs past the bound: %d lines, %v; want capped at %d", len(lines), err, MaxLogTail)
	}
	resp, err := http.Get(srv.URL + PathLogs + "?function=sim&tail=-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("tail=-1: %d, want 400", resp.StatusCode)
	}
}

type failingInstances struct {
	fakeInstances
	err error
}

func (f *failingInstances) Health(string) (int, time.Time, error) { return 0, time.Time{}, f.err }

// TestFailingKeepsItsKind: why a function cannot start crosses to the
// gateways with its status and code (a budget at zero stays 429
// budget_exceeded), and a plain reason stays a plain error.
func TestFailingKeepsItsKind(t *testing.T) {
	budget := &errkind.Error{Kind: errkind.RateLimited, Code: "budget_exceeded", Msg: "budget exceeded"}
	for _, tt := range []struct {
		err        error
		kind       errkind.Kind
		code, text string
	}{
		{fmt.Errorf("%w: $0.01 of $0.01 today", budget), errkind.RateLimited, "budget_exceeded", "budget exceeded: $0.01 of $0.01 today"},
		{errors.New("exit status 1"), 0, "", "exit status 1"},
	} {
		inst := &failingInstances{fakeInstances: fakeInstances{eps: map[string][]api.Endpoint{}}, err: tt.err}
		l := NewLeader(LeaderOptions{Instances: inst, Functions: func() []string { return []string{"sim"} }})
		g := NewGateway(GatewayOptions{ID: "a"})
		g.apply(l.Apply(g.report()))
		_, _, failing := g.Health("sim")
		if failing == nil || failing.Error() != tt.text {
			t.Fatalf("failing = %v, want %q", failing, tt.text)
		}
		var k errkind.Kinded
		got := errors.As(failing, &k)
		if got != (tt.code != "") || got && (k.ErrorKind() != tt.kind || k.ErrorCode() != tt.code) {
			t.Errorf("failing %v: kinded %v, want kind %v code %q", failing, got, tt.kind, tt.code)
		}
	}
}
