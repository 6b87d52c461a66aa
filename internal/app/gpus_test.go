package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/gpu"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/spec"
)

// recordingDriver starts instances that exit when stopped, and records
// the GPUs each start was given.
type recordingDriver struct {
	mu      sync.Mutex
	devices map[string][]string // instance → GPUDevices
	fail    bool
}

func (d *recordingDriver) Start(_ context.Context, s driver.StartSpec) (driver.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return nil, &driver.StartError{Reason: "exited with status 1 before ready"}
	}
	d.devices[s.InstanceID] = slices.Clone(s.GPUDevices)
	return &stubInstance{done: make(chan struct{})}, nil
}

type stubInstance struct {
	once sync.Once
	done chan struct{}
}

func (i *stubInstance) Addr() string           { return "127.0.0.1:1" }
func (i *stubInstance) Phases() []driver.Phase { return nil }
func (i *stubInstance) Done() <-chan struct{}  { return i.done }
func (i *stubInstance) Err() error             { return nil }
func (i *stubInstance) Stop(ctx context.Context) error {
	i.once.Do(func() { close(i.done) })
	return nil
}

func gpuRegistry(t *testing.T, d driver.Driver) *runtimes {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc := process.New(logger, process.Options{})
	rt := newRegistry(proc, onnx.New(proc, logger, onnx.Options{}))
	rt.byName[spec.RuntimeProcess] = d
	rt.gpus = gpu.NewAllocator([]gpu.Device{
		{Index: 0, UUID: "GPU-0", Class: "a100-40gb"}, {Index: 1, UUID: "GPU-1", Class: "a100-40gb"},
	}, "")
	return rt
}

// A start takes whole GPUs from the allocator and hands them to the
// driver; with none free the start fails naming the holder; an exited
// instance gives its GPUs back; a failed start keeps none.
func TestRuntimesAssignGPUs(t *testing.T) {
	d := &recordingDriver{devices: map[string][]string{}}
	rt := gpuRegistry(t, d)
	start := func(id string, count int) (driver.Instance, error) {
		return rt.Start(t.Context(), driver.StartSpec{Function: "fn", InstanceID: id, Runtime: spec.RuntimeProcess,
			Resources: driver.Resources{GPU: driver.GPU{Type: "A100-40GB", Count: count}}})
	}
	a, err := start("i1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start("i2", 1); err != nil {
		t.Fatal(err)
	}
	if got := d.devices; !slices.Equal(got["i1"], []string{"GPU-0"}) || !slices.Equal(got["i2"], []string{"GPU-1"}) {
		t.Fatalf("devices = %v, want i1 GPU-0 and i2 GPU-1", got)
	}
	_, err = start("i3", 1)
	var se *driver.StartError
	if !errors.As(err, &se) || !errors.Is(err, gpu.ErrNoFreeGPU) {
		t.Fatalf("third start: %v, want a StartError wrapping ErrNoFreeGPU", err)
	}
	a.Stop(t.Context())
	eventually(t, "GPU 0 released after its instance exited", func() (bool, string) {
		h := rt.gpus.Held()
		return h[0] == 0, fmt.Sprint(h)
	})
	if _, err := start("i3", 1); err != nil || !slices.Equal(d.devices["i3"], []string{"GPU-0"}) {
		t.Fatalf("start after release: %v, devices %v", err, d.devices["i3"])
	}
	d.fail = true
	rt.gpus.Release("fn/i3")
	if _, err := start("i4", 1); err == nil {
		t.Fatal("failing start succeeded")
	}
	if got := rt.gpus.Held(); got[0] != 0 {
		t.Errorf("a failed start kept its GPU: held %v", got)
	}
	// No GPU asked: the driver is called without devices.
	d.fail = false
	if _, err := start("cpu", 0); err != nil || len(d.devices["cpu"]) != 0 {
		t.Errorf("cpu start: %v, devices %v", err, d.devices["cpu"])
	}
}

// Deploying a GPU function where no such GPU exists is refused with
// what the machine has.
func TestRuntimesValidateGPUs(t *testing.T) {
	rt := gpuRegistry(t, &recordingDriver{})
	for _, tt := range []struct{ doc, want string }{
		{"name: a\ncommand: [sh]\nresources: {gpu: {type: a100-40gb, count: 2}}", ""},
		{"name: a\ncommand: [sh]\nresources: {gpu: {type: a100-40gb, count: 1, shared: true}}", ""},
		{"name: a\ncommand: [sh]\nresources: {gpu: {type: h100-80gb, count: 1}}",
			`invalid spec for "a": resources.gpu: no matching GPU on this server: this server has no h100-80gb GPU (it has 2× a100-40gb) (ember serve --gpus off meters resources.gpu without GPUs)`},
		{"name: a\ncommand: [sh]\nresources: {gpu: {type: a100-40gb, count: 3}}",
			`invalid spec for "a": resources.gpu: no matching GPU on this server: one instance asks for 3 a100-40gb GPUs; this server has 2 (ember serve --gpus off meters resources.gpu without GPUs)`},
	} {
		f, err := spec.Parse([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		err = rt.Validate(f)
		if (tt.want == "") != (err == nil) || (err != nil && err.Error() != tt.want) {
			t.Errorf("Validate(%q) =\n%v\nwant\n%s", tt.doc, err, tt.want)
		}
	}
}
