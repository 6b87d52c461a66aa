package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/spec"
)

func TestStartSpecFor(t *testing.T) {
	tests := []struct {
		name, doc string
		version   int64
		id        string
		want      driver.StartSpec
	}{
		{"process", "name: sim\ncommand: [./sim, --port, '${PORT}']\nenv: {A: b}\nworkdir: ./w", 3, "sim-k3x9qa", driver.StartSpec{
			Function: "sim", InstanceID: "sim-k3x9qa",
			Labels:  driver.Labels{Function: "sim", Version: 3, Instance: "sim-k3x9qa"},
			Runtime: "process", Command: []string{"./sim", "--port", "${PORT}"},
			Env: map[string]string{"A": "b"}, Workdir: "./w", HealthPath: "/health",
		}},
		{"container", `
name: acme/llm
runtime: container
image: ghcr.io/acme/llm@sha256:0123
health: /ready
resources: {cpu: 1.5, memory: 16Gi, gpu: {type: A100-40GB, count: 2}}
volumes:
  - {name: weights, mount_path: /weights, read_only: true}
  - {host_path: /srv/cache, mount_path: /cache, read_only: false}
`, 1, "acme-llm-1", driver.StartSpec{
			Function: "acme/llm", InstanceID: "acme-llm-1",
			Labels:  driver.Labels{Function: "acme/llm", Version: 1, Instance: "acme-llm-1"},
			Runtime: "container", Image: "ghcr.io/acme/llm@sha256:0123", HealthPath: "/ready",
			Resources: driver.Resources{CPU: 1.5, MemoryBytes: 16 << 30, GPU: driver.GPU{Type: "A100-40GB", Count: 2}},
			Volumes: []driver.Volume{
				{Name: "weights", MountPath: "/weights", ReadOnly: true},
				{HostPath: "/srv/cache", MountPath: "/cache"},
			},
		}},
		{"onnx at deploy (no instance yet)", "name: ocr\nruntime: onnx\ntask: ocr\nmodel: ./m\nresources: {cpu: 2}", 0, "", driver.StartSpec{
			Function: "ocr", Labels: driver.Labels{Function: "ocr"},
			Runtime: "onnx", Task: "ocr", Model: "./m", HealthPath: "/health",
			Resources: driver.Resources{CPU: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := spec.Parse([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if got := StartSpecFor(f, tt.version, tt.id); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StartSpecFor =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// recordingDriver keeps the StartSpec it was asked to start and fails the
// start (nothing needs to run).
type recordingDriver struct{ got chan driver.StartSpec }

func (d recordingDriver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	d.got <- s
	return nil, errors.New("not started")
}

// The manager hands the driver the labels of the instance it starts.
func TestManagerPassesLabels(t *testing.T) {
	d := recordingDriver{got: make(chan driver.StartSpec, 1)}
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	f, err := spec.Parse([]byte("name: f\ncommand: [x]\nimage: ''\nscaling: {max: 1}"))
	if err != nil {
		t.Fatal(err)
	}
	m.Put(f, 7)
	m.Reconcile("f", 1, time.Now())
	select {
	case s := <-d.got:
		if s.Labels.Function != "f" || s.Labels.Version != 7 || s.Labels.Instance == "" || s.Labels.Instance != s.InstanceID {
			t.Errorf("labels = %+v (instance id %q), want function f, version 7 and the instance's id", s.Labels, s.InstanceID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no start reached the driver")
	}
}
