package controller

import (
	"testing"
	"time"
)

// localSource is an in-process activator with a fixed reading.
type localSource struct {
	avg     float64
	cur     int
	forgot  []string
	sampled int
}

func (l *localSource) Demand(fn string) (float64, int) { l.sampled++; return l.avg, l.cur }
func (l *localSource) Forget(fn string)                { l.forgot = append(l.forgot, fn) }

func TestDemandReportsSumsSources(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type report struct {
		src     string
		avg     float64
		cur     int
		agoSecs int
	}
	tests := []struct {
		name    string
		local   *localSource // nil: none
		reports []report
		fn      string
		wantAvg float64
		wantCur int
	}{
		{name: "two gateways sum",
			reports: []report{{"gw-a", 2.5, 3, 1}, {"gw-b", 1.5, 2, 0}},
			fn:      "f", wantAvg: 4, wantCur: 5},
		{name: "a stale gateway stops counting",
			reports: []report{{"gw-a", 2.5, 3, 6}, {"gw-b", 1.5, 2, 0}},
			fn:      "f", wantAvg: 1.5, wantCur: 2},
		{name: "a newer report replaces the older of the same gateway",
			reports: []report{{"gw-a", 9, 9, 3}, {"gw-a", 1, 1, 1}},
			fn:      "f", wantAvg: 1, wantCur: 1},
		{name: "an older report does not replace a newer one",
			reports: []report{{"gw-a", 1, 1, 1}, {"gw-a", 9, 9, 3}},
			fn:      "f", wantAvg: 1, wantCur: 1},
		{name: "the in-process activator and a remote gateway sum",
			local:   &localSource{avg: 3, cur: 4},
			reports: []report{{"gw-b", 1, 2, 0}},
			fn:      "f", wantAvg: 4, wantCur: 6},
		{name: "reports of another function do not count",
			reports: []report{{"gw-a", 2, 2, 0}},
			fn:      "g", wantAvg: 0, wantCur: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDemandReports(5 * time.Second)
			if tt.local != nil {
				d.Add(tt.local)
			}
			for _, r := range tt.reports {
				d.Report(Report{Source: r.src, Function: "f", Average: r.avg, Current: r.cur,
					At: t0.Add(-time.Duration(r.agoSecs) * time.Second)})
			}
			avg, cur := d.Demand(tt.fn, t0)
			if avg != tt.wantAvg || cur != tt.wantCur {
				t.Errorf("Demand(%q) = %v, %d; want %v, %d", tt.fn, avg, cur, tt.wantAvg, tt.wantCur)
			}
			if tt.local != nil && tt.local.sampled != 1 {
				t.Errorf("in-process source sampled %d times, want 1", tt.local.sampled)
			}
		})
	}
}

func TestDemandReportsForget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	local := &localSource{}
	d := NewDemandReports(0)
	d.Add(local)
	d.Report(Report{Source: "gw-b", Function: "f", Average: 2, Current: 2, At: t0})
	d.Forget("f")
	if avg, cur := d.Demand("f", t0); avg != 0 || cur != 0 {
		t.Errorf("Demand after Forget = %v, %d; want 0, 0", avg, cur)
	}
	if len(local.forgot) != 1 || local.forgot[0] != "f" {
		t.Errorf("in-process source forgot %v, want [f] (its waiters fail)", local.forgot)
	}
}
