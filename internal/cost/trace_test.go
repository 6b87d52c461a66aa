package cost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTrace(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		arrivals []float64
		durs     []float64
	}{
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:05.4799600,3180,8\n", []float64{0, 1.5}, nil},
		{"unix seconds", "100.5\n# comment\n\n101\n103.25\n", []float64{0, 0.5, 2.75}, nil},
		{"unix with durations", "10,2.5\n12,1\n", []float64{0, 2}, []float64{2.5, 1}},
		{"unsorted kept with durations", "12,1\n10,2.5\n", []float64{0, 2}, []float64{2.5, 1}},
		{"header with duration", "timestamp,duration\n5,0.5\n6,0.25\n", []float64{0, 1}, []float64{0.5, 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := ParseTrace(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Arrivals) != len(tt.arrivals) {
				t.Fatalf("arrivals = %v, want %v", tr.Arrivals, tt.arrivals)
			}
			for i := range tt.arrivals {
				if !near(tr.Arrivals[i], tt.arrivals[i], 1e-6) && tr.Arrivals[i] != tt.arrivals[i] {
					t.Errorf("arrival[%d] = %v, want %v", i, tr.Arrivals[i], tt.arrivals[i])
				}
			}
			if len(tr.Durations) != len(tt.durs) {
				t.Fatalf("durations = %v, want %v", tr.Durations, tt.durs)
			}
			for i := range tt.durs {
				if tr.Durations[i] != tt.durs[i] {
					t.Errorf("duration[%d] = %v, want %v", i, tr.Durations[i], tt.durs[i])
				}
			}
		})
	}
}

func TestParseTraceErrors(t *testing.T) {
	for _, in := range []string{"", "a,b\n1,2\n", "1\nnot-a-time\n", "1,x\n"} {
		if _, err := ParseTrace(strings.NewReader(in)); !errors.Is(err, ErrBadTrace) {
			t.Errorf("ParseTrace(%q) err = %v, want ErrBadTrace", in, err)
		}
	}
}

// The public Azure trace: one hour, 8,819 requests.
func TestPublicTrace(t *testing.T) {
	// Committed (testdata/trace/README.md) so this runs on every clone.
	f, err := os.Open(filepath.Join("testdata", "trace", "AzureLLMInferenceTrace_code.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := ParseTrace(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(tr.Arrivals), 8819; got != want {
		t.Errorf("requests = %d, want %d", got, want)
	}
	if !near(tr.Span, 3436, 0.01) {
		t.Errorf("span = %.0f s, want ~3436", tr.Span)
	}
	if len(tr.Tokens) != len(tr.Arrivals) {
		t.Errorf("tokens = %d, want one per request", len(tr.Tokens))
	}
	// Replay it: 2.57 req/s of 0.5 s requests on a CPU class.
	u, err := Simulate(Inputs{SecondsPerRequest: 0.5, Hardware: "cpu", Concurrency: 4, Trace: tr})
	if err != nil {
		t.Fatal(err)
	}
	if u.Seconds.Busy <= 0 || u.PeakInstances < 1 {
		t.Errorf("replay usage %+v", u)
	}
}
