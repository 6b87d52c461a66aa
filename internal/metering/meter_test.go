package metering

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// memStore is an in-memory Store: hourly rollups keyed like the SQL tables.
type memStore struct {
	mu   sync.Mutex
	rows map[bucketKey]*Bucket
	reqs []Request
	fail error
}

func newMemStore() *memStore { return &memStore{rows: map[bucketKey]*Bucket{}} }

func (s *memStore) AddUsage(ctx context.Context, bs []Bucket, reqs []Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for _, b := range bs {
		k := bucketKey{b.Function, b.Hardware, b.Start.Unix()}
		if s.rows[k] == nil {
			c := Bucket{Function: b.Function, Hardware: b.Hardware, Start: b.Start}
			s.rows[k] = &c
		}
		s.rows[k].add(b)
	}
	s.reqs = append(s.reqs, reqs...)
	return nil
}

func (s *memStore) Usage(ctx context.Context, q Query) ([]Bucket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	agg := map[bucketKey]*Bucket{}
	for _, b := range s.rows {
		if q.Function != "" && b.Function != q.Function {
			continue
		}
		start := Truncate(b.Start, q.By)
		if (!q.From.IsZero() && start.Before(q.From)) || (!q.To.IsZero() && !start.Before(q.To)) {
			continue
		}
		k := bucketKey{b.Function, b.Hardware, start.Unix()}
		if agg[k] == nil {
			agg[k] = &Bucket{Function: b.Function, Hardware: b.Hardware, Start: start}
		}
		agg[k].add(*b)
	}
	var out []Bucket
	for _, b := range agg {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// total sums every stored bucket of fn.
func (s *memStore) total(fn string) Bucket {
	bs, _ := s.Usage(context.Background(), Query{Function: fn, By: ByDay})
	var t Bucket
	for _, b := range bs {
		t.add(b)
	}
	return t
}

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func profiles(m map[string]Profile) Profiles {
	return ProfileFunc(func(fn string) (Profile, bool) { p, ok := m[fn]; return p, ok })
}

const a100 = 0.001

func newTestMeter(store Store, now *time.Time) *Meter {
	return New(store, profiles(map[string]Profile{
		"llm": {Hardware: "a100-40gb", GPUs: 1, PerSecondUSD: a100,
			Budget: &Budget{USDPerDay: 0.05, Action: ActionCap}},
		"ocr": {Hardware: "cpu", PerSecondUSD: 0.0000125},
	}), nil, Options{Now: func() time.Time { return *now }})
}

// event is one scripted observer call.
type event struct {
	at       float64
	id       string
	from, to string // a state change when to or from is set
	busy     *bool
}

var yes, no = true, false

func play(m *Meter, fn string, evs []event) {
	for _, e := range evs {
		if e.busy != nil {
			m.Busy(fn, e.id, *e.busy, at(e.at))
		} else {
			m.StateChange(fn, e.id, e.from, e.to, at(e.at))
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestAccounting(t *testing.T) {
	tests := []struct {
		name      string
		fn        string
		events    []event
		want      Seconds
		wantStart int64
		wantBusyP int64
		price     float64
		gpus      float64
	}{
		{
			name: "cold start, two busy periods, keep-warm, stop",
			fn:   "llm",
			events: []event{
				{at: 0, id: "a", to: "starting"},
				{at: 2, id: "a", from: "starting", to: "ready"},
				{at: 3, id: "a", busy: &yes},
				{at: 5, id: "a", busy: &no},
				{at: 6, id: "a", busy: &yes},
				{at: 7, id: "a", busy: &no},
				{at: 10, id: "a", from: "stopping", to: "stopping"},
				{at: 10, id: "a", from: "stopping", to: ""},
			},
			want: Seconds{Loading: 2, Busy: 3, Idle: 5}, wantStart: 1, wantBusyP: 2, price: a100, gpus: 1,
		},
		{
			name: "failed while starting bills the loading time",
			fn:   "llm",
			events: []event{
				{at: 0, id: "a", to: "starting"},
				{at: 4.5, id: "a", from: "starting", to: "failed"},
			},
			want: Seconds{Loading: 4.5}, wantStart: 1, price: a100, gpus: 1,
		},
		{
			name: "crash while busy ends the busy period at the failure",
			fn:   "ocr",
			events: []event{
				{at: 0, id: "a", to: "starting"},
				{at: 1, id: "a", from: "starting", to: "ready"},
				{at: 1, id: "a", busy: &yes},
				{at: 4, id: "a", from: "ready", to: "failed"},
				{at: 5, id: "a", busy: &no}, // release after the crash: ignored
			},
			want: Seconds{Loading: 1, Busy: 3}, wantStart: 1, wantBusyP: 1, price: 0.0000125,
		},
		{
			name: "two instances overlap and events arrive slightly out of order",
			fn:   "ocr",
			events: []event{
				{at: 0, id: "a", to: "starting"},
				{at: 1, id: "b", to: "starting"},
				{at: 2, id: "a", from: "starting", to: "ready"},
				{at: 2, id: "a", busy: &yes},
				{at: 3, id: "b", from: "starting", to: "ready"},
				{at: 4, id: "a", busy: &no},
				{at: 3.9, id: "a", busy: &yes}, // reported late: counts from 4
				{at: 5, id: "a", busy: &no},
				{at: 8, id: "a", from: "stopping", to: ""},
				{at: 8, id: "b", from: "stopping", to: ""},
			},
			want: Seconds{Loading: 4, Busy: 3, Idle: 3 + 5}, wantStart: 2, wantBusyP: 2, price: 0.0000125,
		},
		{
			name: "a worker kept loaded after scale to zero is the function's idle time, not a start",
			fn:   "ocr",
			events: []event{
				{at: 0, id: "a", to: "starting"},
				{at: 1, id: "a", from: "starting", to: "ready"},
				{at: 3, id: "a", from: "stopping", to: ""},
				{at: 3, id: "ocr~loaded-1", to: "loaded"},
				{at: 9, id: "ocr~loaded-1", from: "loaded", to: ""},
			},
			want: Seconds{Loading: 1, Idle: 2 + 6}, wantStart: 1, price: 0.0000125,
		},
		{
			name: "an instance unknown to the meter is ignored",
			fn:   "ocr",
			events: []event{
				{at: 1, id: "x", busy: &yes},
				{at: 2, id: "x", from: "ready", to: ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(100)
			st := newMemStore()
			m := newTestMeter(st, &now)
			play(m, tt.fn, tt.events)
			if err := m.Flush(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			got := st.total(tt.fn)
			if diff := cmp.Diff(tt.want, got.Seconds, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("seconds (-want +got):\n%s", diff)
			}
			if got.Starts != tt.wantStart || got.BusyPeriods != tt.wantBusyP {
				t.Errorf("starts, busy periods = %d, %d; want %d, %d", got.Starts, got.BusyPeriods, tt.wantStart, tt.wantBusyP)
			}
			if want := tt.want.Total() * tt.price; !near(got.CostUSD, want) {
				t.Errorf("cost = %g, want price × seconds = %g", got.CostUSD, want)
			}
			if want := tt.want.Total() * tt.gpus; !near(got.GPUSeconds, want) {
				t.Errorf("gpu seconds = %g, want %g", got.GPUSeconds, want)
			}
			if n := len(m.instances); n != 0 {
				t.Errorf("%d instances still open after their end", n)
			}
		})
	}
}

func TestHourBoundarySplits(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	st := newMemStore()
	m := newTestMeter(st, &now)
	start := t0.Add(59 * time.Minute)
	m.StateChange("llm", "a", "", "starting", start)
	m.StateChange("llm", "a", "starting", "ready", start.Add(30*time.Second))
	m.StateChange("llm", "a", "stopping", "", start.Add(2*time.Minute))
	if err := m.Flush(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	bs, _ := st.Usage(context.Background(), Query{Function: "llm", By: ByHour})
	want := []Bucket{
		{Function: "llm", Hardware: "a100-40gb", Start: t0, Seconds: Seconds{Loading: 30, Idle: 30}, GPUSeconds: 60, CostUSD: 60 * a100, Starts: 1},
		{Function: "llm", Hardware: "a100-40gb", Start: t0.Add(time.Hour), Seconds: Seconds{Idle: 60}, GPUSeconds: 60, CostUSD: 60 * a100},
	}
	if diff := cmp.Diff(want, bs, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("hourly buckets (-want +got):\n%s", diff)
	}
	days, _ := st.Usage(context.Background(), Query{Function: "llm", By: ByDay})
	if len(days) != 1 || !near(days[0].Seconds.Total(), 120) {
		t.Errorf("day rollup = %+v, want one day of 120 s", days)
	}
}

func TestFlushCheckpointsLiveInstancesAndRetries(t *testing.T) {
	now := at(0)
	st := newMemStore()
	m := newTestMeter(st, &now)
	ctx := context.Background()
	m.StateChange("ocr", "a", "", "starting", at(0))
	m.StateChange("ocr", "a", "starting", "ready", at(1))

	// A flush while the instance lives counts it up to the flush.
	if err := m.Flush(ctx, at(5)); err != nil {
		t.Fatal(err)
	}
	if got := st.total("ocr").Seconds; !near(got.Idle, 4) || !near(got.Loading, 1) {
		t.Fatalf("after first flush seconds = %+v, want loading 1 idle 4", got)
	}
	// A failing store keeps the deltas for the next flush.
	st.fail = errors.New("disk full")
	m.Busy("ocr", "a", true, at(6))
	m.Busy("ocr", "a", false, at(8))
	if err := m.Flush(ctx, at(9)); err == nil {
		t.Fatal("flush with a failing store returned nil")
	}
	st.fail = nil
	m.StateChange("ocr", "a", "stopping", "", at(10))
	if err := m.Flush(ctx, at(20)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Seconds{Loading: 1, Busy: 2, Idle: 7}, st.total("ocr").Seconds, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("seconds after retry (-want +got):\n%s", diff)
	}
}

func TestRequestAttribution(t *testing.T) {
	tests := []struct {
		name     string
		parallel int // requests sharing one busy second
		wantUSD  float64
	}{
		{"alone pays its busy second", 1, a100},
		{"four side by side share it", 4, a100 / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(10)
			st := newMemStore()
			m := newTestMeter(st, &now)
			m.StateChange("llm", "a", "", "starting", at(0))
			m.StateChange("llm", "a", "starting", "ready", at(1))
			m.Busy("llm", "a", true, at(2))
			m.Busy("llm", "a", false, at(3))
			for range tt.parallel {
				m.Request("llm", 200, 1500*time.Millisecond, 500*time.Millisecond, false)
			}
			if err := m.Flush(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			got := st.total("llm")
			last := st.reqs[len(st.reqs)-1]
			if !near(last.CostUSD, tt.wantUSD) {
				t.Errorf("last request cost = %g, want %g", last.CostUSD, tt.wantUSD)
			}
			if got.Requests != int64(tt.parallel) || !near(got.QueueSeconds, 0.5*float64(tt.parallel)) {
				t.Errorf("requests, queue = %d, %g", got.Requests, got.QueueSeconds)
			}
			if est := m.RequestCost("llm", time.Second); !near(est, tt.wantUSD) {
				t.Errorf("RequestCost(1s) = %g, want %g", est, tt.wantUSD)
			}
		})
	}
}

// A first request's busy event can arrive before its instance's ready
// event; the busy time is still busy.
func TestBusyBeforeReadyEvent(t *testing.T) {
	now := at(10)
	st := newMemStore()
	m := newTestMeter(st, &now)
	m.StateChange("llm", "a", "", "starting", at(0))
	m.Busy("llm", "a", true, at(2))
	m.StateChange("llm", "a", "starting", "ready", at(2)) // reported after the busy event
	m.Busy("llm", "a", false, at(5))
	if err := m.Flush(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if got := st.total("llm").Seconds; !near(got.Busy, 3) || !near(got.Loading, 2) {
		t.Errorf("seconds = %+v, want loading 2, busy 3", got)
	}
}

func TestServiceTime(t *testing.T) {
	now := at(10)
	m := newTestMeter(newMemStore(), &now)
	if mean, n := m.ServiceTime("llm"); n != 0 || mean != 0 {
		t.Errorf("ServiceTime before any request = %s over %d, want 0 over 0", mean, n)
	}
	m.Request("llm", 200, 1500*time.Millisecond, 500*time.Millisecond, false) // 1 s on the instance
	m.Request("llm", 200, 3*time.Second, 0, true)                             // 3 s
	m.Request("llm", 503, 10*time.Millisecond, 0, false)                      // refused: not service
	m.Request("llm", 429, time.Millisecond, 0, false)                         // rate limited
	m.Request("llm", 499, 30*time.Second, 0, false)                           // gave up while queued
	if mean, n := m.ServiceTime("llm"); n != 2 || mean != 2*time.Second {
		t.Errorf("ServiceTime = %s over %d, want 2s over 2 (refusals left out)", mean, n)
	}
}

func TestBudget(t *testing.T) {
	now := at(0)
	st := newMemStore()
	m := newTestMeter(st, &now)
	m.StateChange("llm", "a", "", "starting", at(0))
	m.StateChange("llm", "a", "starting", "ready", at(10))

	steps := []struct {
		at         time.Time
		wantAction string
		wantUSD    float64
	}{
		{at(20), "", 20 * a100},
		// 0.05 USD/day at 0.001/s: over at 50 s, counting the live instance.
		{at(50), ActionCap, 50 * a100},
		{at(60), ActionCap, 60 * a100},
		// A new UTC day starts from zero.
		{t0.Add(14*time.Hour + 20*time.Second), "", 20 * a100},
	}
	for _, s := range steps {
		action, spent := m.OverBudget("llm", s.at)
		if action != s.wantAction || !near(spent, s.wantUSD) {
			t.Errorf("OverBudget at %s = %q, %g; want %q, %g", s.at.Format(time.TimeOnly), action, spent, s.wantAction, s.wantUSD)
		}
	}
	if action, _ := m.OverBudget("ocr", at(60)); action != "" {
		t.Errorf("function without a budget: action %q, want none", action)
	}
}

func TestRunLoadsTodaysSpend(t *testing.T) {
	now := at(0)
	st := newMemStore()
	st.AddUsage(context.Background(), []Bucket{{Function: "llm", Hardware: "a100-40gb", Start: t0, CostUSD: 0.06}}, nil)
	m := newTestMeter(st, &now)
	if err := m.loadToday(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if action, spent := m.OverBudget("llm", now); action != ActionCap || !near(spent, 0.06) {
		t.Errorf("after restart OverBudget = %q, %g; want cap, 0.06", action, spent)
	}
}

// TestRunFlushesFullBatches: a busy server's records go to the store in
// batches of flushBatch, without waiting for the tick, in call order, with
// no rollup upserts; a second batch (written through the reused array)
// loses nothing.
func TestRunFlushesFullBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		m := New(st, profiles(map[string]Profile{"ocr": {Hardware: "cpu", PerSecondUSD: 0.0000125}}), nil,
			Options{FlushEvery: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		stored := func() []Request {
			synctest.Wait() // Run has flushed what it was told to, and waits again
			st.mu.Lock()
			defer st.mu.Unlock()
			return slices.Clone(st.reqs)
		}
		for batch := 1; batch <= 2; batch++ {
			for i := range flushBatch - 1 {
				m.Request("ocr", 200, time.Duration(i)*time.Microsecond, 0, false)
			}
			if got := len(stored()); got != (batch-1)*flushBatch {
				t.Fatalf("batch %d: %d records stored before the batch filled, want %d", batch, got, (batch-1)*flushBatch)
			}
			m.Request("ocr", 200, time.Duration(flushBatch-1)*time.Microsecond, 0, false)
			got := stored()
			if len(got) != batch*flushBatch {
				t.Fatalf("batch %d: %d records stored once it filled, want %d", batch, len(got), batch*flushBatch)
			}
			st.mu.Lock()
			rollups := len(st.rows)
			st.mu.Unlock()
			if rollups != 0 {
				t.Fatalf("batch %d: the early flush wrote %d rollup rows, want none before the tick", batch, rollups)
			}
			for i, r := range got[(batch-1)*flushBatch:] {
				if r.Function != "ocr" || r.Duration != time.Duration(i)*time.Microsecond {
					t.Fatalf("batch %d record %d = %s %v, want ocr %v", batch, i, r.Function, r.Duration, time.Duration(i)*time.Microsecond)
				}
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestRequestPricedByItsFunction: with instances of several functions
// live, each call is priced at its own function's hardware; once the last
// instance of a function is gone, at the hardware it last ran on.
func TestRequestPricedByItsFunction(t *testing.T) {
	now := at(10)
	st := newMemStore()
	m := newTestMeter(st, &now)
	for i := range 3 {
		m.StateChange("ocr", fmt.Sprintf("o%d", i), "", "starting", at(0))
		m.StateChange("llm", fmt.Sprintf("l%d", i), "", "starting", at(0))
	}
	m.Request("ocr", 200, time.Second, 0, false)
	m.Request("llm", 200, time.Second, 0, false)
	for i := range 3 {
		m.StateChange("llm", fmt.Sprintf("l%d", i), "starting", "", at(5))
	}
	m.Request("llm", 200, time.Second, 0, false)
	m.StateChange("unknown", "u", "ready", "", at(6)) // never seen: no count goes negative
	if err := m.Flush(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	want := []string{"cpu", "a100-40gb", "a100-40gb"}
	if len(st.reqs) != len(want) {
		t.Fatalf("%d request records, want %d", len(st.reqs), len(want))
	}
	for i, r := range st.reqs {
		if r.Hardware != want[i] {
			t.Errorf("request %d (%s) priced on %q, want %q", i, r.Function, r.Hardware, want[i])
		}
	}
	if live := m.funcs["llm"].live; live != 0 {
		t.Errorf("llm live count %d after its instances went, want 0", live)
	}
}

// BenchmarkRequestManyInstances: pricing a call does not depend on how
// many instances the server runs (it scanned them all).
func BenchmarkRequestManyInstances(b *testing.B) {
	now := at(10)
	m := newTestMeter(newMemStore(), &now)
	for i := range 500 {
		m.StateChange(fmt.Sprintf("fn%d", i%100), fmt.Sprintf("i%d", i), "", "starting", at(0))
	}
	m.StateChange("ocr", "o", "", "starting", at(0))
	b.ReportAllocs()
	for b.Loop() {
		m.Request("ocr", 200, time.Millisecond, 0, false)
		if len(m.requests) >= flushBatch {
			m.requests = m.requests[:0]
		}
	}
}

// TestNoRequestRecords: with records off the store gets none, and the
// rollup still counts every request with its times and cost.
func TestNoRequestRecords(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) {
			now := at(10)
			st := newMemStore()
			m := New(st, profiles(map[string]Profile{"llm": {Hardware: "a100-40gb", GPUs: 1, PerSecondUSD: a100}}),
				nil, Options{Now: func() time.Time { return now }, NoRequestRecords: off})
			m.StateChange("llm", "a", "", "starting", at(0))
			m.StateChange("llm", "a", "starting", "ready", at(1))
			m.Busy("llm", "a", true, at(2))
			m.Busy("llm", "a", false, at(3))
			m.Request("llm", 200, 1500*time.Millisecond, 500*time.Millisecond, true)
			m.Request("llm", 503, time.Second, time.Second, false)
			if err := m.Flush(context.Background(), now); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 2, true: 0}[off]; len(st.reqs) != want {
				t.Errorf("%d request records stored, want %d", len(st.reqs), want)
			}
			got := st.total("llm")
			if got.Requests != 2 || got.Errors != 1 || got.ColdStarts != 1 || !near(got.DurationSeconds, 2.5) ||
				!near(got.QueueSeconds, 1.5) || !near(got.AttributedUSD, a100) {
				t.Errorf("rollup = %+v, want 2 requests, 1 error, 1 cold, 2.5 s, 1.5 s queued, $%g attributed", got, a100)
			}
		})
	}
}

// Requests makes memStore a RequestStore: fn's records (all when empty)
// in [from, to), newest first, at most limit.
func (s *memStore) Requests(_ context.Context, fn string, from, to time.Time, limit int) ([]Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for i := len(s.reqs) - 1; i >= 0 && len(out) < limit; i-- {
		r := s.reqs[i]
		if (fn == "" || r.Function == fn) && !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r)
		}
	}
	return out, nil
}

// TestRequestsReadsWhatIsPending: Requests writes the pending records,
// and only them (the rollups wait for the tick), then reads each function
// asked for; with records off it says so.
func TestRequestsReadsWhatIsPending(t *testing.T) {
	now := at(10)
	st := newMemStore()
	m := newTestMeter(st, &now)
	m.Request("llm", 200, time.Second, 0, false)
	m.Request("ocr", 200, time.Second, 0, false)
	m.Request("llm", 503, time.Second, 0, false)
	got, err := m.Requests(context.Background(), []string{"ocr", "llm"}, at(0), at(20), 10, now)
	if err != nil {
		t.Fatal(err)
	}
	var fns []string
	for _, r := range got {
		fns = append(fns, fmt.Sprintf("%s %d", r.Function, r.Status))
	}
	if want := []string{"ocr 200", "llm 503", "llm 200"}; !slices.Equal(fns, want) {
		t.Errorf("records = %q, want %q", fns, want)
	}
	if len(st.rows) != 0 {
		t.Errorf("Requests wrote %d rollup rows, want none before the tick", len(st.rows))
	}

	off := New(st, profiles(nil), nil, Options{Now: func() time.Time { return now }, NoRequestRecords: true})
	if _, err := off.Requests(context.Background(), []string{""}, at(0), at(20), 10, now); !errors.Is(err, ErrNoRequestRecords) {
		t.Errorf("records off: err = %v, want ErrNoRequestRecords", err)
	}
}

// TestEmptyFlushKeepsArrays: flushes with nothing to write (idle ticks,
// reads of the records) keep the record arrays a busy period grew, so
// the next one does not grow them from nothing.
func TestEmptyFlushKeepsArrays(t *testing.T) {
	now := at(10)
	m := newTestMeter(newMemStore(), &now)
	for range 3 {
		m.Request("llm", 200, time.Second, 0, false)
	}
	for i := range 4 {
		if err := m.flush(context.Background(), now, i == 0); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if got := cap(m.requests) + cap(m.spare); got < 3 {
		t.Errorf("after empty flushes the record arrays hold %d, want the 3 the busy flush used", got)
	}
}
