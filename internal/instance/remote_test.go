package instance

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// TestTouchHoldsRemoteBusyInstances: an instance busy at other gateways
// (the leader hears it in their reports) is never stopped for idleness,
// and once quiet its keep-warm counts from its last remote use.
func TestTouchHoldsRemoteBusyInstances(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 1, idle_timeout: 10s}")
	m.Reconcile("f", 1, time.Now())
	waitFor(t, "1 ready", func() bool { return m.count(api.StateReady) == 1 })
	ins, _ := m.Instances("f")
	id := ins[0].ID
	m.Touch("f", id, 3, time.Time{})
	m.Reconcile("f", 0, time.Now().Add(time.Hour))
	if n := m.count(api.StateReady); n != 1 {
		t.Fatalf("ready = %d with 3 requests in flight at gateways, want 1", n)
	}
	last := time.Now()
	m.Touch("f", id, 0, last)
	m.Reconcile("f", 0, last.Add(5*time.Second))
	if n := m.count(api.StateReady); n != 1 {
		t.Fatalf("ready = %d 5 s after the last remote use, want 1 (keep-warm 10s)", n)
	}
	m.Reconcile("f", 0, time.Now().Add(time.Hour))
	waitFor(t, "stopped once idle past keep-warm", func() bool { ins, _ := m.Instances("f"); return len(ins) == 0 })
}

// TestAdoptRegistersReadyInstance: an instance a previous leader started
// is taken over as ready and counts toward the function's instances, so
// no duplicate starts; one of an older version is refused.
func TestAdoptRegistersReadyInstance(t *testing.T) {
	d := &fakeDriver{}
	m, notified := newManager(t, d, "{max: 2}")
	in := &fakeInstance{addr: "10.0.0.7:8080", done: make(chan struct{})}
	if m.Adopt("f", 0, "old-version", in, nil) {
		t.Fatal("adopted an instance of another version")
	}
	if !m.Adopt("f", 1, "f-adopted", in, nil) {
		t.Fatal("Adopt refused the current version")
	}
	if m.Adopt("f", 1, "f-adopted", in, nil) {
		t.Fatal("adopted the same id twice")
	}
	<-notified
	eps := m.Endpoints("f")
	if len(eps) != 1 || eps[0].ID != "f-adopted" || eps[0].Addr != "10.0.0.7:8080" {
		t.Fatalf("endpoints %+v, want the adopted instance", eps)
	}
	m.Reconcile("f", 1, time.Now())
	if n := d.starts(); n != 0 {
		t.Errorf("%d starts with one adopted instance and desired 1, want 0", n)
	}
	in.Stop(t.Context()) // it dies behind the manager's back
	waitFor(t, "the adopted instance's exit noticed", func() bool { return len(m.Endpoints("f")) == 0 })
}

// TestAdoptStartingWaitsForItsProbe: an adopted instance that is not yet
// ready (a Pod still pulling its image when the previous leader left)
// holds its place among the function's instances as starting, so no
// duplicate starts, and serves once its probe passes.
func TestAdoptStartingWaitsForItsProbe(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 1}")
	in := &fakeInstance{addr: "10.0.0.7:8080", done: make(chan struct{})}
	probing, pass := make(chan struct{}), make(chan struct{})
	await := func(ctx context.Context) error {
		close(probing)
		select {
		case <-pass:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !m.Adopt("f", 1, "f-slow", in, await) {
		t.Fatal("Adopt refused the current version")
	}
	<-probing
	if n := m.count(api.StateStarting); n != 1 {
		t.Fatalf("starting = %d while the adopted instance is probed, want 1", n)
	}
	if eps := m.Endpoints("f"); len(eps) != 0 {
		t.Fatalf("endpoints %+v before the probe passed, want none", eps)
	}
	m.Reconcile("f", 1, time.Now())
	if n := d.starts(); n != 0 {
		t.Errorf("%d starts beside an adopted instance still starting, desired 1: want 0", n)
	}
	close(pass)
	waitFor(t, "the adopted instance ready", func() bool { return m.count(api.StateReady) == 1 })
	if eps := m.Endpoints("f"); len(eps) != 1 || eps[0].ID != "f-slow" || eps[0].Addr != "10.0.0.7:8080" {
		t.Fatalf("endpoints %+v, want the adopted instance", eps)
	}
	if in.stopped() {
		t.Error("the adopted instance was stopped after its probe passed")
	}
}

// TestAdoptStartingFailure: an adopted instance whose probe fails, or
// does not pass within start_timeout, is stopped and recorded as a
// failed start.
func TestAdoptStartingFailure(t *testing.T) {
	tests := []struct {
		name  string
		await func(context.Context) error
		want  string
	}{
		{"probe fails", func(context.Context) error { return errors.New("pod failed: ImagePullBackOff") }, "ImagePullBackOff"},
		{"start_timeout", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, "not ready within start_timeout 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDriver{}
			m, _ := newManager(t, d, "{max: 1}\nstart_timeout: 100ms")
			fi := &fakeInstance{addr: "10.0.0.7:8080", done: make(chan struct{})}
			in := &tailingInstance{fakeInstance: fi, lines: []string{"loading weights", "killed"}}
			if !m.Adopt("f", 1, "f-bad", in, tt.await) {
				t.Fatal("Adopt refused the current version")
			}
			waitFor(t, "the adopted instance failed", func() bool { return m.count(api.StateFailed) == 1 })
			waitFor(t, "the failed adopted instance stopped", in.stopped)
			ins, _ := m.Instances("f")
			if len(ins) != 1 || !strings.Contains(ins[0].ExitError, tt.want) {
				t.Errorf("instances %+v, want one failed saying %q", ins, tt.want)
			}
			if !slices.Equal(ins[0].LastLogs, []string{"loading weights", "killed"}) {
				t.Errorf("last logs %q, want the adopted instance's", ins[0].LastLogs)
			}
			// Another leader's start failed, not this function's: no
			// backoff, callers are not refused, and a start goes ahead.
			if live, _, failing := m.Health("f"); failing != nil {
				t.Errorf("Health = %d, %v after a failed adoption, want no failure", live, failing)
			}
			m.Reconcile("f", 1, time.Now())
			waitFor(t, "a start after the failed adoption (no backoff)", func() bool { return d.starts() == 1 })
		})
	}
}

// TestAdoptStartingStopped: an adopted instance stopped while its probe
// runs (scaled down, the function removed) is stopped in the driver too.
func TestAdoptStartingStopped(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 1}")
	in := &fakeInstance{addr: "10.0.0.7:8080", done: make(chan struct{})}
	probing := make(chan struct{})
	await := func(ctx context.Context) error { close(probing); <-ctx.Done(); return ctx.Err() }
	if !m.Adopt("f", 1, "f-slow", in, await) {
		t.Fatal("Adopt refused the current version")
	}
	<-probing
	m.Remove(t.Context(), "f")
	waitFor(t, "the adopted instance stopped", in.stopped)
}

// tailingInstance is a fakeInstance that keeps log lines (LogTailer).
type tailingInstance struct {
	*fakeInstance
	lines []string
}

func (t *tailingInstance) Tail(n int) []string { return t.lines[max(len(t.lines)-n, 0):] }
