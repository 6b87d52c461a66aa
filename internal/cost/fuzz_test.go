package cost

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseTrace feeds arbitrary files to the trace reader: it must either
// refuse them with ErrBadTrace or return a trace whose invariants the cost
// simulation relies on.
func FuzzParseTrace(f *testing.F) {
	f.Add("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,374,44\n2023-11-16 18:17:04.0000000,10,5\n")
	f.Add("1700000000,0.5\n1700000001.25,0.25\n# comment\n\n1699999999,1\n")
	f.Add("time,duration\n1,2\n3,4\n")
	f.Add("1\n")
	if files, _ := filepath.Glob("../../bench/keepwarm/testdata/*/*.csv"); len(files) > 0 {
		for _, p := range files[:min(len(files), 4)] {
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(string(b))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		tr, err := ParseTrace(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(tr.Arrivals) == 0 {
			return
		}
		if tr.Arrivals[0] != 0 {
			t.Fatalf("first arrival %v, want 0", tr.Arrivals[0])
		}
		for i, a := range tr.Arrivals {
			if math.IsNaN(a) || math.IsInf(a, 0) || (i > 0 && a < tr.Arrivals[i-1]) {
				t.Fatalf("arrival %d = %v: not finite and ascending", i, a)
			}
		}
		if tr.Durations != nil && len(tr.Durations) != len(tr.Arrivals) {
			t.Fatalf("%d durations for %d arrivals", len(tr.Durations), len(tr.Arrivals))
		}
		for i, d := range tr.Durations {
			if math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
				t.Fatalf("duration %d = %v: want finite and ≥ 0", i, d)
			}
		}
		if !(tr.Span >= 1) || math.IsInf(tr.Span, 0) {
			t.Fatalf("span %v: want finite and ≥ 1 s", tr.Span)
		}
		if r := tr.RequestsPerDay(); math.IsNaN(r) || math.IsInf(r, 0) {
			t.Fatalf("requests/day %v", r)
		}
	})
}
