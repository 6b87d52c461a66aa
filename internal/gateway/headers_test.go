package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/spec"
)

// slotInvoker serves every call from one fixed slot, as a free slot
// (TryNow) or after a wait (Try).
type slotInvoker struct {
	slot activator.Slot
	wait bool // serve from Try, as a call that had to wait
}

func (s slotInvoker) TryNow(_ string, f func(activator.Slot) error) (bool, error) {
	if s.wait {
		return false, nil
	}
	return true, f(s.slot)
}

func (s slotInvoker) Try(_ context.Context, _ string, f func(activator.Slot) error) error {
	return f(s.slot)
}

func (slotInvoker) Queued(string) int { return 0 }

// oneFunction knows one deployed function and one instance's phases.
type oneFunction struct {
	unused // nil: the rest is not used by invoke
	fn     *spec.Function
}

// unused names Instances for embedding: embedded under its own name, its
// Instances method would be hidden by the field.
type unused = Instances

func (o oneFunction) Function(name string) (*spec.Function, bool) {
	return o.fn, name == o.fn.Name
}

func (o oneFunction) Instance(id string) (api.Instance, bool) {
	return api.Instance{ID: id, PhaseOrder: []string{"spawned", "ready"},
		Phases: map[string]float64{"spawned": 1.5, "ready": 20.25}}, true
}

func (oneFunction) Exited(string, time.Duration) (error, bool) { return nil, false }

// forwarderFunc answers in place of the instance.
type forwarderFunc func(w http.ResponseWriter) error

func (f forwarderFunc) ForwardUntil(w http.ResponseWriter, _ *http.Request, _, _ string, _ time.Time) error {
	return f(w)
}

// flatCoster prices a second of service at one dollar, for the instances
// it knows.
type flatCoster struct{ known string }

func (c flatCoster) RequestCostByInstance(id string, service time.Duration) (float64, bool) {
	return service.Seconds(), id == c.known
}

// TestInvokeHeaders: what a call's response says about its slot. A warm
// call that found a free slot carries Ember-Instance, Ember-Queue-Ms and
// Ember-Cost-USD only; Server-Timing comes with a queue wait or a cold
// start, and Ember-Cold-Start only when true. The cost is set whether the
// instance wrote a status, only a body, or failed.
func TestInvokeHeaders(t *testing.T) {
	warm := activator.Slot{Instance: "sim-1", Addr: "127.0.0.1:1"}
	queued := warm
	queued.Queue = 2500 * time.Microsecond
	cold := queued
	cold.Cold = true
	answer := func(w http.ResponseWriter) error {
		w.Header().Set("Content-Type", "text/plain")
		// An instance's own claims, added after the gateway's headers as
		// the forwarders add them: they never reach the caller.
		w.Header().Add(api.HeaderColdStart, "true")
		w.Header().Add(api.HeaderInstance, "forged")
		w.Header().Add(api.HeaderQueueMs, "9999")
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, "ok")
		return err
	}
	bodyOnly := func(w http.ResponseWriter) error { // no WriteHeader: net/http's implicit 200
		_, err := io.WriteString(w, "ok")
		return err
	}
	failed := func(http.ResponseWriter) error {
		return &proxy.UpstreamError{Addr: "127.0.0.1:1", Err: errors.New("connection reset")}
	}
	for _, tc := range []struct {
		name         string
		slot         activator.Slot
		wait         bool
		fwd          forwarderFunc
		known        string // the instance the coster knows
		status       int
		queueMs      string
		coldStart    string
		serverTiming string
		cost         bool
	}{
		{name: "warm, free slot", slot: warm, fwd: answer, known: "sim-1", status: 200, queueMs: "0.000", cost: true},
		{name: "warm, body only", slot: warm, fwd: bodyOnly, known: "sim-1", status: 200, queueMs: "0.000", cost: true},
		{name: "warm after a wait, no queue", slot: warm, wait: true, fwd: answer, known: "sim-1", status: 200, queueMs: "0.000", cost: true},
		{name: "queued", slot: queued, wait: true, fwd: answer, known: "sim-1", status: 200, queueMs: "2.500",
			serverTiming: "queue;dur=2.500", cost: true},
		{name: "cold", slot: cold, wait: true, fwd: answer, known: "sim-1", status: 200, queueMs: "2.500", coldStart: "true",
			serverTiming: "queue;dur=2.500, spawned;dur=1.500, ready;dur=20.250", cost: true},
		{name: "instance failed", slot: warm, fwd: failed, known: "sim-1", status: 502, queueMs: "0.000", cost: true},
		{name: "instance the meter does not know", slot: warm, fwd: answer, known: "other", status: 200, queueMs: "0.000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Options{
				Invoker:   slotInvoker{slot: tc.slot, wait: tc.wait},
				Instances: oneFunction{fn: &spec.Function{Name: "sim", Timeout: spec.Duration(time.Minute), MaxBodyBytes: 1 << 20}},
				Forwarder: tc.fwd,
				Costs:     flatCoster{known: tc.known},
				Logger:    slog.New(slog.DiscardHandler),
			})
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/run/sim/predict", strings.NewReader(`{"x":1}`)))
			h := rec.Result().Header
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			for _, name := range []string{api.HeaderInstance, api.HeaderQueueMs, api.HeaderColdStart} {
				if vv := h.Values(name); len(vv) > 1 {
					t.Errorf("%s = %q: the instance's value reached the caller", name, vv)
				}
			}
			for name, want := range map[string]string{
				api.HeaderInstance:     "sim-1",
				api.HeaderQueueMs:      tc.queueMs,
				api.HeaderColdStart:    tc.coldStart,
				api.HeaderServerTiming: tc.serverTiming,
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if got := h.Get(api.HeaderCost); (got != "") != tc.cost {
				t.Errorf("%s = %q, want it set: %v", api.HeaderCost, got, tc.cost)
			}
		})
	}
}

// TestInvokeHeadersAfterAFailedTarget: a route that falls back calls
// invoke again on the same response; what the first target's slot said
// (a cold start, its timing, its cost) must not stay on the answer of the
// second.
func TestInvokeHeadersAfterAFailedTarget(t *testing.T) {
	cold := activator.Slot{Instance: "sim-1", Addr: "127.0.0.1:1", Cold: true, Queue: 3 * time.Millisecond}
	warm := activator.Slot{Instance: "sim-2", Addr: "127.0.0.1:2"}
	failed := forwarderFunc(func(http.ResponseWriter) error {
		return &proxy.UpstreamError{Addr: "127.0.0.1:1", Err: errors.New("connection reset")}
	})
	answer := forwarderFunc(func(w http.ResponseWriter) error {
		_, err := io.WriteString(w, "ok")
		return err
	})
	newGateway := func(slot activator.Slot, fwd forwarderFunc, known string) *Gateway {
		return New(Options{
			Invoker:   slotInvoker{slot: slot, wait: slot.Cold},
			Instances: oneFunction{fn: &spec.Function{Name: "sim", Timeout: spec.Duration(time.Minute), MaxBodyBytes: 1 << 20}},
			Forwarder: fwd,
			Costs:     flatCoster{known: known},
			Logger:    slog.New(slog.DiscardHandler),
		})
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/run/sim/predict", nil)
	if err := newGateway(cold, failed, "sim-1").invoke(rec, r, "sim", "/predict", false); err == nil {
		t.Fatal("the first target's failure was not returned")
	}
	if rec.Header().Get(api.HeaderColdStart) != "true" || rec.Header().Get(api.HeaderCost) == "" {
		t.Fatalf("after the cold failure: %v, want its cold start and cost", rec.Header())
	}
	// The second target's meter does not know its instance: no cost.
	if err := newGateway(warm, answer, "other").invoke(rec, r, "sim", "/predict", false); err != nil {
		t.Fatal(err)
	}
	h := rec.Result().Header
	for _, name := range []string{api.HeaderColdStart, api.HeaderServerTiming, api.HeaderCost} {
		if v := h.Get(name); v != "" {
			t.Errorf("%s = %q on the second target's answer, left from the first", name, v)
		}
	}
	if got := h.Get(api.HeaderInstance); got != "sim-2" {
		t.Errorf("%s = %q, want sim-2", api.HeaderInstance, got)
	}
}
