package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = `
name: sim
runtime: process
command: ["./bin/server", "--flag"]
env: {KEY: value}
workdir: ./
health: /health
scaling:
  min: 0
  max: 8
  concurrency: 4
  target: 0.7
  idle_timeout: 120s
  buffer: 0
  schedule:
    - {cron: "0 9 * * 1-5", duration: 10h, min: 2}
timeout: 300s
retries: 2
`

func TestParseExample(t *testing.T) {
	f, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := f.Scaling.IdleTimeout.D(), 120*time.Second; got != want {
		t.Errorf("idle_timeout = %v, want %v", got, want)
	}
	if got, want := f.Scaling.Schedule[0].Duration.D(), 10*time.Hour; got != want {
		t.Errorf("schedule duration = %v, want %v", got, want)
	}
	if got, want := f.Health.Path, "/health"; got != want {
		t.Errorf("health = %q, want %q", got, want)
	}
	if got, want := f.Env["KEY"].Value, "value"; got != want {
		t.Errorf("env KEY = %q, want %q", got, want)
	}
}

func TestParseJSONAndNumbers(t *testing.T) {
	f, err := Parse([]byte(`{"name":"a/b-c","command":["x"],"scaling":{"idle_timeout":2.5}}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := f.Scaling.IdleTimeout.D(), 2500*time.Millisecond; got != want {
		t.Errorf("idle_timeout = %v, want %v", got, want)
	}
	if f.Runtime != RuntimeProcess || f.Scaling.Max != DefaultMax || f.Timeout.D() != DefaultTimeout {
		t.Errorf("defaults not applied: %+v", f)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"missing name", `command: [x]`, "name: required"},
		{"bad name", `{name: Bad_Name, command: [x]}`, `name: must match`},
		{"runtime not a name", `{name: a, command: [x], runtime: "Docker Engine"}`, `runtime: must be a runtime name such as process or onnx (got "Docker Engine")`},
		{"max below min", `{name: a, command: [x], scaling: {min: 3, max: 2}}`, "scaling.max: must be ≥ scaling.min (got 2 < 3)"},
		{"negative concurrency", `{name: a, command: [x], scaling: {concurrency: -1}}`, "scaling.concurrency: must be ≥ 0"},
		{"target above 1", `{name: a, command: [x], scaling: {target: 1.5}}`, "scaling.target: must be in (0, 1] (got 1.5)"},
		{"bad cron", `{name: a, command: [x], scaling: {schedule: [{cron: "nope", duration: 1h, min: 1}]}}`, `scaling.schedule[0].cron: invalid cron "nope"`},
		{"zero window", `{name: a, command: [x], scaling: {schedule: [{cron: "@daily", min: 1}]}}`, "scaling.schedule[0].duration: must be > 0"},
		{"bad health", `{name: a, command: [x], health: "health"}`, "health: must be an absolute path"},
		{"gpu count", `{name: a, command: [x], resources: {gpu: {type: a100}}}`, "resources.gpu.count: must be ≥ 1"},
		{"gpu count bound", `{name: a, command: [x], resources: {gpu: {type: a100, count: 65}}}`, "resources.gpu.count: must be ≤ 64 (got 65)"},
		{"gpu type", `{name: a, command: [x], resources: {gpu: {type: "a 100", count: 1}}}`, `resources.gpu.type: must be at most 63 characters without spaces`},
		{"cpu bound", `{name: a, command: [x], resources: {cpu: 2000}}`, "resources.cpu: must be in [0, 1024] cores (got 2000)"},
		{"memory unit", `{name: a, command: [x], resources: {memory: 2GB}}`, `resources.memory: invalid quantity "2GB"`},
		{"memory too small", `{name: a, command: [x], resources: {memory: 512Ki}}`, `resources.memory: must be in [1Mi, 16Ti] (got "512Ki")`},
		{"image flag", `{name: a, runtime: container, image: "--privileged"}`, `image: must be an image reference`},
		{"image space", `{name: a, runtime: container, image: "acme/m 1"}`, `image: must be an image reference`},
		{"volume neither", `{name: a, runtime: container, image: m, volumes: [{mount_path: /m}]}`, "volumes[0]: set name (a volume the runtime manages) or host_path"},
		{"volume both", `{name: a, runtime: container, image: m, volumes: [{name: v, host_path: /v, mount_path: /m}]}`, "volumes[0]: set name or host_path, not both"},
		{"volume name", `{name: a, runtime: container, image: m, volumes: [{name: Models, mount_path: /m}]}`, `volumes[0].name: must match`},
		{"volume host path relative", `{name: a, runtime: container, image: m, volumes: [{host_path: ./m, mount_path: /m}]}`, `volumes[0].host_path: must be an absolute, clean path`},
		{"volume host path dotdot", `{name: a, runtime: container, image: m, volumes: [{host_path: /srv/../etc, mount_path: /m}]}`, `volumes[0].host_path: must be an absolute, clean path`},
		{"volume mount root", `{name: a, runtime: container, image: m, volumes: [{name: v, mount_path: /}]}`, `volumes[0].mount_path: must be an absolute, clean path other than /`},
		{"volume mounted twice", `{name: a, runtime: container, image: m, volumes: [{name: v, mount_path: /m}, {name: w, mount_path: /m}]}`, `volumes[1].mount_path: "/m" is already mounted by volumes[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v, want *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown field", `{name: a, command: [x], scalling: {}}`, `unknown field "scalling"`},
		{"bad duration", `{name: a, command: [x], timeout: "5 minutes"}`, `timeout: want a duration such as "30s" or "2m", got "5 minutes"`},
		{"malformed", `{name: a, command: [x]`, "spec:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestEffectiveMin(t *testing.T) {
	s := Scaling{Min: 1, Max: 5, Schedule: []Window{
		{Cron: "0 9 * * 1-5", Duration: Duration(10 * time.Hour), Min: 3},
		{Cron: "30 12 * * *", Duration: Duration(30 * time.Minute), Min: 9},
	}}
	day := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, time.UTC) } // Nov 23 2026 is a Monday
	tests := []struct {
		name string
		at   time.Time
		want int
	}{
		{"monday before window", day(23, 8, 59), 1},
		{"monday at start", day(23, 9, 0), 3},
		{"monday inside", day(23, 18, 59), 3},
		{"monday after end", day(23, 19, 0), 1},
		{"saturday", day(28, 10, 0), 1},
		{"lunch spike capped at max", day(28, 12, 45), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.EffectiveMin(tt.at); got != tt.want {
				t.Errorf("EffectiveMin(%v) = %d, want %d", tt.at, got, tt.want)
			}
		})
	}
}

// The spec checks only the form of runtime-specific fields: what a runtime
// can run is its driver's to say (internal/driver/*: Validate).
func TestRuntimeFieldsAreTheDriversToRefuse(t *testing.T) {
	for _, in := range []string{
		`name: a`, // no command: the process driver refuses it
		`{name: a, runtime: docker}`,
		`{name: a, runtime: onnx, model: ./m, task: chat}`,
		`{name: a, command: [x], image: ghcr.io/acme/m:1, volumes: [{host_path: /srv/m, mount_path: /m, read_only: true}]}`,
	} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%q) = %v, want accepted (the driver decides)", in, err)
		}
	}
}

func TestContainerFieldsRoundTrip(t *testing.T) {
	f, err := Parse([]byte(`{name: a, runtime: container, image: "ghcr.io/acme/m@sha256:0123", resources: {cpu: 1.5, memory: 2Gi, gpu: {type: L4, count: 2}}, volumes: [{name: models, mount_path: /models, read_only: true}, {host_path: /srv/cache, mount_path: /cache}]}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	yes := true
	want := Volumes{{Name: "models", MountPath: "/models", ReadOnly: &yes}, {HostPath: "/srv/cache", MountPath: "/cache"}}
	if f.Image != "ghcr.io/acme/m@sha256:0123" || !reflect.DeepEqual(f.Volumes, want) {
		t.Errorf("Parse = image %q volumes %+v, want %+v", f.Image, f.Volumes, want)
	}
	if got, err := f.Resources.MemoryBytes(); err != nil || got != 2<<30 {
		t.Errorf("MemoryBytes = %d, %v; want %d", got, err, 2<<30)
	}
}

func TestGPUCount(t *testing.T) {
	tests := []struct {
		name string
		r    *Resources
		want int
	}{
		{"no resources", nil, 0},
		{"cpu only", &Resources{CPU: 2}, 0},
		{"one gpu", &Resources{GPU: &GPU{Type: "l4", Count: 1}}, 1},
		{"eight gpus", &Resources{GPU: &GPU{Type: "h100", Count: 8}}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Function{Resources: tt.r}
			if got := f.GPUCount(); got != tt.want {
				t.Errorf("GPUCount() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestMemoryBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512Mi", 512 << 20, ""},
		{"1.5Gi", 3 << 29, ""},
		{"2G", 2e9, ""},
		{"16Ti", 16 << 40, ""},
		{"17Ti", 0, "must be in [1Mi, 16Ti]"},
		{"100", 0, "must be in [1Mi, 16Ti]"},
		{"-1Gi", 0, "invalid quantity"},
		{"1 Gi", 0, "invalid quantity"},
		{"Gi", 0, "invalid quantity"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := (&Resources{Memory: tt.in}).MemoryBytes()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("MemoryBytes(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("MemoryBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// health takes the path alone or {path, interval, timeout}, and reads back
// in the form it was written.
func TestHealthForms(t *testing.T) {
	tests := []struct {
		doc, want, err string
	}{
		{`{name: a, command: [x], health: /ready}`, `"/ready"`, ""},
		{`{name: a, command: [x]}`, `"/health"`, ""},
		{`{name: a, command: [x], health: {path: /ready, interval: 2s, timeout: 500ms}}`, `{"path":"/ready","interval":"2s","timeout":"500ms"}`, ""},
		{`{name: a, command: [x], health: {interval: 2s}}`, `{"path":"/health","interval":"2s"}`, ""},
		{`{name: a, command: [x], health: {path: /ready, every: 2s}}`, "", `unknown field "every"`},
		{`{name: a, command: [x], health: {interval: 5ms}}`, "", "health.interval: must be between 10ms and 1m0s (got 5ms)"},
		{`{name: a, command: [x], health: {timeout: 2m}}`, "", "health.timeout: must be between 10ms and 1m0s (got 2m0s)"},
		{`{name: a, command: [x], health: 3}`, "", "health: want a path"},
	}
	for _, tt := range tests {
		f, err := Parse([]byte(tt.doc))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.doc, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.doc, err)
			continue
		}
		if b, _ := json.Marshal(f.Health); string(b) != tt.want {
			t.Errorf("%s: health reads back %s, want %s", tt.doc, b, tt.want)
		}
	}
}
