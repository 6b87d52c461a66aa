package autoscaler

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }

func TestWindowAverage(t *testing.T) {
	type sample struct {
		at float64 // seconds after t0
		v  float64
	}
	tests := []struct {
		name    string
		span    time.Duration
		samples []sample
		now     float64
		d       time.Duration
		want    float64
	}{
		{name: "empty window", now: 10, d: time.Minute, want: 0},
		{
			name:    "samples in one bucket are averaged",
			samples: []sample{{0, 10}, {0.3, 20}, {0.9, 30}},
			now:     0.95, d: time.Second, want: 20,
		},
		{
			name:    "no dilution before the first sample",
			samples: []sample{{100, 10}, {101, 20}},
			now:     101, d: time.Minute, want: 15,
		},
		{
			name:    "silent buckets after the first sample count as zero",
			samples: []sample{{0, 10}, {1, 20}},
			now:     2, d: time.Minute, want: 10,
		},
		{
			name:    "only the last d counts",
			samples: []sample{{0, 100}, {1, 100}, {2, 4}, {3, 6}},
			now:     3, d: 2 * time.Second, want: 5,
		},
		{
			name:    "a partial bucket is rounded up to a whole one",
			samples: []sample{{0, 100}, {1, 4}, {2, 6}},
			now:     2, d: 1500 * time.Millisecond, want: 5,
		},
		{
			name:    "slots from an earlier lap read as empty",
			span:    5 * time.Second,
			samples: []sample{{0, 10}, {1, 10}, {2, 10}, {3, 10}, {4, 10}, {7, 10}},
			now:     8, d: 5 * time.Second, want: 4, // 4..8: 10, 0, 0, 10, 0
		},
		{
			name:    "d longer than the span is cut to the span",
			span:    3 * time.Second,
			samples: []sample{{0, 90}, {1, 3}, {2, 6}, {3, 9}},
			now:     3, d: time.Hour, want: 6,
		},
		{
			name:    "a sample older than the span is dropped",
			span:    3 * time.Second,
			samples: []sample{{10, 3}, {11, 3}, {12, 3}, {9, 1000}},
			now:     12, d: 3 * time.Second, want: 3,
		},
		{
			name:    "a late sample inside the span still counts",
			samples: []sample{{10, 3}, {12, 3}, {11, 6}},
			now:     12, d: 3 * time.Second, want: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(time.Second, tt.span)
			for _, s := range tt.samples {
				w.Record(sec(s.at), s.v)
			}
			if got := w.Average(sec(tt.now), tt.d); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Average(t0+%gs, %v) = %v, want %v", tt.now, tt.d, got, tt.want)
			}
		})
	}
}

func TestWindowLastActive(t *testing.T) {
	w := NewWindow(0, 0)
	if got := w.LastActive(); !got.IsZero() {
		t.Fatalf("LastActive() on a new window = %v, want zero", got)
	}
	w.Record(sec(0), 0)
	if got := w.LastActive(); !got.IsZero() {
		t.Errorf("LastActive() after a zero sample = %v, want zero", got)
	}
	w.Record(sec(1.5), 2)
	w.Record(sec(3), 0)
	w.Record(sec(1), 5) // late: must not move LastActive back
	if got, want := w.LastActive(), sec(1.5); !got.Equal(want) {
		t.Errorf("LastActive() = %v, want %v", got, want)
	}
}

func TestNewWindowDefaults(t *testing.T) {
	w := NewWindow(0, -1)
	if got, want := w.granularity, DefaultGranularity; got != want {
		t.Errorf("granularity = %v, want %v", got, want)
	}
	if got, want := len(w.buckets), 60; got != want {
		t.Errorf("buckets = %d, want %d", got, want)
	}
}
