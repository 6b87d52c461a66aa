package process

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
	"github.com/google/go-cmp/cmp"
)

// An instance that notifies is ready when it says so, however slow the
// probe: here the probe's first connect comes before the sim listens and
// the next would be 10 minutes later.
func TestStartReadyByNotification(t *testing.T) {
	needSim(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := New(nil, Options{ProbeInitial: 10 * time.Minute, ProbeMax: 10 * time.Minute})
	di, err := d.Start(ctx, driver.StartSpec{
		Function: "sim", InstanceID: "sim-1",
		Command:    []string{simBin, "--notify=true"},
		Env:        map[string]string{"SIM_START_DELAY": "50ms"},
		HealthPath: "/health",
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	inst := di.(*Instance)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		inst.Stop(ctx)
	})
	var names []string
	for _, p := range inst.Phases() {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{driver.PhaseSpawned, driver.PhaseListening, driver.PhaseReady}, names); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	resp, err := http.Get("http://" + inst.Addr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health right after a notified start = %d, want 200", resp.StatusCode)
	}
}

// An instance that does not notify is still found by the probe.
func TestStartReadyWithoutNotification(t *testing.T) {
	needSim(t)
	t.Parallel()
	inst := start(t, driver.StartSpec{
		Function: "sim", InstanceID: "sim-1",
		Command: []string{simBin, "--notify=false"},
		Env:     map[string]string{"SIM_START_DELAY": "20ms"},
	})
	if n := len(inst.Phases()); n != 3 {
		t.Errorf("phases = %v, want spawned, listening, ready", inst.Phases())
	}
}

func TestHasReadyLine(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"READY=1\n", true},
		{"STATUS=loading\nREADY=1\n", true},
		{"READY=1\r\n", true},
		{"READY=1", false}, // not yet a whole line
		{"READY=0\n", false},
		{"NOTREADY=1\n", false},
		{"READY=10\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasReadyLine([]byte(tt.in)); got != tt.want {
			t.Errorf("hasReadyLine(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// A version whose instance notified is not probed on its next start until
// it is late: the instance accepts no connection before it says READY=1,
// so the first request is its first. A version that stops notifying is
// still found by the probe after the hold, and forgotten.
func TestNotifiedVersionNotProbed(t *testing.T) {
	needSim(t)
	t.Parallel()
	d := New(nil, Options{})
	startWith := func(id, notify string) *Instance {
		t.Helper()
		return startOn(t, d, driver.StartSpec{
			Function: "sim", InstanceID: id, Labels: driver.Labels{Function: "sim", Version: 3, Instance: id},
			Command: []string{simBin, "--notify=" + notify},
		})
	}
	key := "sim@3"
	startWith("sim-1", "true")
	// READY=1 is learned when it is read, which may be just after the
	// probe found the instance ready.
	waitFor(t, "the notified start learned", func() bool { return d.notifiers.hold(key) > 0 })
	second := startWith("sim-2", "true")
	if second.TakeConn() != nil {
		t.Error("a held start handed over a probe connection: it probed")
	}
	var names []string
	for _, p := range second.Phases() {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{driver.PhaseSpawned, driver.PhaseListening, driver.PhaseReady}, names); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	resp, err := http.Get("http://" + second.Addr() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats struct{ Conns int }
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || stats.Conns != 1 {
		t.Errorf("connections the instance accepted = %d (%v), want 1: this request's only", stats.Conns, err)
	}

	// The same version no longer notifies: the probe finds it after the
	// hold, and the version is forgotten.
	startWith("sim-3", "false")
	if h := d.notifiers.hold(key); h != 0 {
		t.Errorf("hold after a probed start = %v, want none", h)
	}
}

func TestNotifierHold(t *testing.T) {
	var n notifiers
	if h := n.hold("f@1"); h != 0 {
		t.Errorf("unknown version held %v", h)
	}
	for _, tc := range []struct {
		took, want time.Duration
	}{
		{time.Millisecond, holdMin},
		{15 * time.Millisecond, 45 * time.Millisecond},
		{time.Minute, holdMax},
	} {
		n.learn("f@1", tc.took)
		if h := n.hold("f@1"); h != tc.want {
			t.Errorf("took %v: hold %v, want %v", tc.took, h, tc.want)
		}
	}
	if h := n.hold("f@2"); h != 0 {
		t.Errorf("another version held %v", h)
	}
	n.forget("f@1")
	if h := n.hold("f@1"); h != 0 {
		t.Errorf("after a probed start held %v", h)
	}
	for i := range maxNotifierFuncs + 1 {
		n.learn("g@"+strconv.Itoa(i), time.Millisecond)
	}
	if len(n.took) > maxNotifierFuncs {
		t.Errorf("%d versions remembered, want at most %d", len(n.took), maxNotifierFuncs)
	}
}
