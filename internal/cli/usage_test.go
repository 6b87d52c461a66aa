package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

func TestWriteUsage(t *testing.T) {
	h := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	fig := api.UsageFigures{Seconds: api.UsageSeconds{Loading: 0.3, Busy: 2, Idle: 1.7}, Requests: 5, ColdStarts: 1,
		ColdStartShare: 0.2, Utilization: 0.5, CostUSD: 0.004}
	rep := api.UsageReport{From: h, To: h.Add(time.Hour), By: "hour", Total: fig, Functions: []api.FunctionUsage{{
		Function: "sim", Hardware: "a100-40gb", UsageFigures: fig,
		Periods:      []api.UsagePeriod{{Start: h, UsageFigures: fig}},
		Alternatives: []api.UsageAlternative{{Name: "always-on aws-p4d.24xlarge", CostUSD: 32, Note: "1 instance(s) for the whole 1h0m0s"}},
		Budget:       &api.BudgetStatus{SpentUSD: 0.004, USDPerDay: 0.001, Action: "cap", Over: true},
	}}}
	var b bytes.Buffer
	if err := writeUsage(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sim on a100-40gb", "20.0%", "$0.004000", "always-on aws-p4d.24xlarge  $32.00",
		"OVER (cap)", "Total: 5 requests, 1 cold (20.0%), 4.0 instance-seconds (2.0 busy)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteUsageRequests(t *testing.T) {
	at := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	rec := api.UsageRequest{Function: "sim", Hardware: "cpu", At: at, Status: 200, DurationMs: 1.5, QueueMs: 12.25, Cold: true, CostUSD: 0.0001}
	tests := []struct {
		name string
		out  api.UsageRequests
		want []string
	}{
		{"records", api.UsageRequests{Requests: []api.UsageRequest{rec}, More: true},
			[]string{"ENDED", "sim", "200", "1.50 ms", "12 ms", "cold", "$0.000100", "more before", "--to 2026-01-02T10:00:00Z"}},
		{"a cost below a millionth", api.UsageRequests{Requests: []api.UsageRequest{{Function: "sim", At: at, Status: 200, CostUSD: 7.81e-8}}},
			[]string{"$7.81e-08"}},
		{"none", api.UsageRequests{From: at, To: at.Add(time.Hour), Requests: []api.UsageRequest{}}, []string{"No requests recorded"}},
		{"records off", api.UsageRequests{Requests: []api.UsageRequest{}, Notes: []string{"this server keeps no request records"}},
			[]string{"note: this server keeps no request records"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeUsageRequests(&b, tt.out); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, b.String())
				}
			}
		})
	}
}

func TestUsageLimitFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--limit", "5"}, "--limit: only with --requests"},
		{[]string{"--requests", "--limit", "-1"}, "--limit: want 1–1000 (got -1)"},
		{[]string{"--requests", "--limit", "0"}, "--limit: want 1–1000 (got 0)"},
		{[]string{"--requests", "--limit", "1001"}, "--limit: want 1–1000 (got 1001)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runCmd(t, newUsageCmd(&globals{}), tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
