package driver_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/driver"
)

// fakeInstance is an adopted instance that records Stop.
type fakeInstance struct {
	handle  string
	stopped bool
	done    chan struct{}
}

func (f *fakeInstance) Addr() string                   { return f.handle + ":8080" }
func (f *fakeInstance) Phases() []driver.Phase         { return nil }
func (f *fakeInstance) Done() <-chan struct{}          { return f.done }
func (f *fakeInstance) Err() error                     { return nil }
func (f *fakeInstance) Stop(ctx context.Context) error { f.stopped = true; return nil }

// fakeRuntime is a runtime whose instances outlive the server, like a
// container engine: it lists what carries Ember's labels.
type fakeRuntime struct {
	running  []driver.Listed
	adopted  map[string]*fakeInstance
	badAdopt string // handle whose Adopt fails
}

func (f *fakeRuntime) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	return nil, errors.New("not used")
}

func (f *fakeRuntime) List(ctx context.Context) ([]driver.Listed, error) { return f.running, nil }

func (f *fakeRuntime) Adopt(ctx context.Context, l driver.Listed) (driver.Instance, error) {
	if l.Handle == f.badAdopt {
		return nil, errors.New("container is gone")
	}
	in := &fakeInstance{handle: l.Handle, done: make(chan struct{})}
	f.adopted[l.Handle] = in
	return in, nil
}

func (f *fakeRuntime) Capabilities() driver.Capabilities {
	return driver.Capabilities{OwnsReadiness: false}
}

var (
	_ driver.Lister  = (*fakeRuntime)(nil)
	_ driver.Adopter = (*fakeRuntime)(nil)
)

// onlyStart is a driver written to the original contract.
type onlyStart struct{}

func (onlyStart) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	return nil, errors.New("not used")
}

func listed(handle, fn string, version int64) driver.Listed {
	l, _ := driver.ParseLabels(driver.Labels{Function: fn, Version: version, Instance: fn + "-" + handle}.Map())
	return driver.Listed{Labels: l, Handle: handle, Addr: handle + ":8080"}
}

// TestReclaim shows how the instance manager adopts at start: it keeps
// what belongs to a deployed function's current version and stops the
// rest (a removed function, an older version).
func TestReclaim(t *testing.T) {
	rt := &fakeRuntime{adopted: map[string]*fakeInstance{}, badAdopt: "c4", running: []driver.Listed{
		listed("c1", "sim", 2),     // current: kept
		listed("c2", "sim", 1),     // older version: stopped
		listed("c3", "removed", 5), // function no longer deployed: stopped
		listed("c4", "sim", 2),     // vanished between List and Adopt: reported
	}}
	deployed := map[string]int64{"sim": 2} // function → current version
	keep := func(l driver.Labels) bool { return deployed[l.Function] == l.Version }

	kept, err := driver.Reclaim(context.Background(), rt, keep)
	if err == nil || !strings.Contains(err.Error(), "adopt sim-c4 (c4): container is gone") {
		t.Errorf("Reclaim error = %v, want the failed adoption of c4 named", err)
	}
	var got []string
	for _, a := range kept {
		got = append(got, a.Labels.Instance+"@"+a.Instance.Addr())
	}
	if want := []string{"sim-c1@c1:8080"}; !slices.Equal(got, want) {
		t.Errorf("kept = %v, want %v", got, want)
	}
	for handle, wantStopped := range map[string]bool{"c1": false, "c2": true, "c3": true} {
		in := rt.adopted[handle]
		if in == nil {
			t.Errorf("%s was not adopted", handle)
			continue
		}
		if in.stopped != wantStopped {
			t.Errorf("%s stopped = %v, want %v", handle, in.stopped, wantStopped)
		}
	}
	if driver.CapabilitiesOf(rt).OwnsReadiness {
		t.Error("a runtime reporting OwnsReadiness false reads as owning readiness")
	}
}

func TestReclaimWithoutCapability(t *testing.T) {
	kept, err := driver.Reclaim(context.Background(), onlyStart{}, func(driver.Labels) bool { return true })
	if kept != nil || err != nil {
		t.Errorf("Reclaim on a driver that cannot list = %v, %v; want nothing", kept, err)
	}
	if !driver.CapabilitiesOf(onlyStart{}).OwnsReadiness {
		t.Error("a driver that reports no capabilities must read as owning readiness (Start returns ready instances)")
	}
}

func TestParseLabels(t *testing.T) {
	l := driver.Labels{Function: "acme/ocr", Version: 7, Instance: "ocr-k3x9qa"}
	got, ok := driver.ParseLabels(l.Map())
	if !ok || got != l {
		t.Errorf("ParseLabels(Map()) = %+v, %v; want %+v, true", got, ok, l)
	}
	tests := []struct {
		name string
		in   map[string]string
	}{
		{"none", map[string]string{}},
		{"not ember's", map[string]string{"app": "web"}},
		{"no instance", map[string]string{driver.LabelFunction: "a", driver.LabelVersion: "1"}},
		{"bad version", map[string]string{driver.LabelFunction: "a", driver.LabelVersion: "x", driver.LabelInstance: "a-1"}},
		{"zero version", map[string]string{driver.LabelFunction: "a", driver.LabelVersion: "0", driver.LabelInstance: "a-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := driver.ParseLabels(tt.in); ok {
				t.Errorf("ParseLabels(%v) ok, want refused", tt.in)
			}
		})
	}
}
