package spec

import (
	"encoding/json"
	"strings"
	"testing"
)

// What 0 means for every numeric field, as the spec reference's table says:
// either its own meaning (kept, never swapped for the default) or refused
// with the reason. Each row also checks the field left out gets the default.
func TestZeroMeansWhatTheTableSays(t *testing.T) {
	const base = "name: z\ncommand: [x]\n"
	tests := []struct {
		field string
		doc   string               // the spec with the field set to 0
		err   string               // "" = accepted
		check func(*Function) bool // what 0 means, when accepted
	}{
		{"scaling.min", "scaling: {min: 0}", "", func(f *Function) bool { return f.Scaling.Min == 0 }},
		{"scaling.max", "scaling: {max: 0}", "scaling.max: must be ≥ 1 (got 0)", nil},
		{"scaling.concurrency", "scaling: {concurrency: 0}", "", func(f *Function) bool { return f.Scaling.Concurrency == 0 }},
		{"scaling.target", "scaling: {target: 0}", "scaling.target: must be in (0, 1] (got 0)", nil},
		{"scaling.idle_timeout", "scaling: {idle_timeout: 0s}", "", func(f *Function) bool { return f.Scaling.IdleTimeout == 0 }},
		{"scaling.idle_timeout as a number", "scaling: {idle_timeout: 0}", "", func(f *Function) bool { return f.Scaling.IdleTimeout == 0 }},
		{"scaling.cold_start_worth", "scaling: {idle_timeout: auto, cold_start_worth: 0s}", "scaling.cold_start_worth: must be a duration of hardware time in (0, 24h0m0s] (got 0s;", nil},
		{"scaling.buffer", "scaling: {buffer: 0}", "", func(f *Function) bool { return f.Scaling.Buffer == 0 }},
		{"scaling.queue with min 1", "scaling: {min: 1, queue: 0}", "", func(f *Function) bool { return f.Scaling.Queue == 0 }},
		{"scaling.queue with min 0", "scaling: {queue: 0}", "scaling.queue: 0 (fail fast: no call waits for a slot) needs scaling.min ≥ 1", nil},
		{"scaling.schedule[].min", "scaling: {max: 2, schedule: [{cron: '0 9 * * *', duration: 1h, min: 0}]}", "", func(f *Function) bool { return f.Scaling.Schedule[0].Min == 0 }},
		{"scaling.schedule[].duration", "scaling: {schedule: [{cron: '0 9 * * *', duration: 0s, min: 1}]}", "scaling.schedule[0].duration: must be > 0 (got 0s)", nil},
		{"timeout", "timeout: 0s", "timeout: must be > 0 (got 0s)", nil},
		{"start_timeout", "start_timeout: 0", "start_timeout: must be > 0 (got 0s)", nil},
		{"retries", "retries: 0", "", func(f *Function) bool { return f.Retries == 0 }},
		{"max_body_bytes", "max_body_bytes: 0", "max_body_bytes: must be ≥ 1 (got 0;", nil},
		{"resources.cpu", "resources: {cpu: 0}", "", func(f *Function) bool { return f.Resources.CPU == 0 }},
		{"resources.gpu.count", "resources: {gpu: {type: l4, count: 0}}", "resources.gpu.count: must be ≥ 1 (got 0)", nil},
		{"budget.usd_per_day", "budget: {usd_per_day: 0}", "budget.usd_per_day: must be > 0 (got 0;", nil},
		{"budget.gpu_seconds_per_day", "resources: {gpu: {type: l4, count: 1}}\nbudget: {usd_per_day: 5, gpu_seconds_per_day: 0}", "budget.gpu_seconds_per_day: must be > 0 (got 0;", nil},
		{"rate_limit.burst", "rate_limit: {rate: 5/s, burst: 0}", "rate_limit.burst: must be ≥ 1 (got 0;", nil},
		{"rate_limit.max_concurrency", "rate_limit: {max_concurrency: 0}", "", func(f *Function) bool { return f.RateLimit.MaxConcurrency == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			f, err := Parse([]byte(base + tt.doc))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.doc, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.doc, err)
			}
			if !tt.check(f) {
				t.Errorf("Parse(%q) = %+v: 0 did not keep its meaning", tt.doc, f.Scaling)
			}
			// Deploy calls Default and Validate again, and a restart parses
			// the stored JSON: the 0 must survive both.
			f.Default()
			if err := f.Validate(); err != nil || !tt.check(f) {
				t.Errorf("after Default+Validate: %v, %+v", err, f.Scaling)
			}
			stored, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(stored)
			if err != nil || !tt.check(again) {
				t.Errorf("stored %s parsed again: %v, 0 lost", stored, err)
			}
		})
	}
}

// Left out, each field gets its documented default.
func TestUnsetGetsTheDefault(t *testing.T) {
	f, err := Parse([]byte("name: z\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"scaling.max", f.Scaling.Max, DefaultMax},
		{"scaling.target", f.Scaling.Target, DefaultTarget},
		{"scaling.idle_timeout", f.Scaling.IdleTimeout.D(), DefaultIdleTimeout},
		{"scaling.queue", f.Scaling.Queue, DefaultQueue},
		{"timeout", f.Timeout.D(), DefaultTimeout},
		{"start_timeout", f.StartTimeout.D(), DefaultStartTimeout},
		{"max_body_bytes", f.MaxBodyBytes, int64(DefaultMaxBodyBytes)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want the default %v", c.field, c.got, c.want)
		}
	}
}
