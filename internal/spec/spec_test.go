package spec

import (
	"errors"
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
	if got, want := f.Health, "/health"; got != want {
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
		{"no command", `name: a`, "command: required"},
		{"unknown runtime", `{name: a, runtime: docker}`, `runtime: unknown runtime "docker"`},
		{"max below min", `{name: a, command: [x], scaling: {min: 3, max: 2}}`, "scaling.max: must be ≥ scaling.min (got 2 < 3)"},
		{"negative concurrency", `{name: a, command: [x], scaling: {concurrency: -1}}`, "scaling.concurrency: must be ≥ 0"},
		{"target above 1", `{name: a, command: [x], scaling: {target: 1.5}}`, "scaling.target: must be in (0, 1] (got 1.5)"},
		{"bad cron", `{name: a, command: [x], scaling: {schedule: [{cron: "nope", duration: 1h, min: 1}]}}`, `scaling.schedule[0].cron: invalid cron "nope"`},
		{"zero window", `{name: a, command: [x], scaling: {schedule: [{cron: "@daily", min: 1}]}}`, "scaling.schedule[0].duration: must be > 0"},
		{"bad health", `{name: a, command: [x], health: "health"}`, "health: must be an absolute path"},
		{"onnx task", `{name: a, runtime: onnx, model: ./m, task: chat}`, `task: unsupported task "chat"`},
		{"gpu count", `{name: a, command: [x], resources: {gpu: {type: a100}}}`, "resources.gpu.count: must be ≥ 1"},
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
