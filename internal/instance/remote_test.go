package instance

import (
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
	if m.Adopt("f", 0, "old-version", in) {
		t.Fatal("adopted an instance of another version")
	}
	if !m.Adopt("f", 1, "f-adopted", in) {
		t.Fatal("Adopt refused the current version")
	}
	if m.Adopt("f", 1, "f-adopted", in) {
		t.Fatal("adopted the same id twice")
	}
	<-notified
	eps := m.Endpoints("f")
	if len(eps) != 1 || eps[0].ID != "f-adopted" || eps[0].Addr != "10.0.0.7:8080" {
		t.Fatalf("endpoints %+v, want the adopted instance", eps)
	}
	m.Reconcile("f", 1, time.Now())
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	if started != 0 {
		t.Errorf("%d starts with one adopted instance and desired 1, want 0", started)
	}
	in.Stop(t.Context()) // it dies behind the manager's back
	waitFor(t, "the adopted instance's exit noticed", func() bool { return len(m.Endpoints("f")) == 0 })
}
