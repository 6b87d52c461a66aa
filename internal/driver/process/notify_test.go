package process

import (
	"context"
	"net/http"
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
