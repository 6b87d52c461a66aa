package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/metering"
)

func TestUsageRollups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ember.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	u := NewUsage(db, UsageOptions{KeepRequests: time.Hour})
	h0 := time.Date(2026, 1, 2, 22, 0, 0, 0, time.UTC)
	delta := func(fn string, start time.Time, busy float64) metering.Bucket {
		return metering.Bucket{Function: fn, Hardware: "cpu", Start: start, Seconds: metering.Seconds{Busy: busy, Idle: 1},
			CostUSD: busy / 1000, Requests: 2, ColdStarts: 1, Starts: 1}
	}
	// Two flushes into the same hour add up; the next hour and the next day are separate.
	for _, batch := range [][]metering.Bucket{
		{delta("a", h0, 10), delta("b", h0, 1)},
		{delta("a", h0, 5), delta("a", h0.Add(time.Hour), 7), delta("a", h0.Add(2*time.Hour), 3)},
	} {
		if err := u.AddUsage(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = Open(ctx, path) // rollups survive a restart
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u = NewUsage(db, UsageOptions{KeepRequests: time.Hour})

	tests := []struct {
		name string
		q    metering.Query
		want []float64 // busy seconds per returned bucket, in order
	}{
		{"hourly a", metering.Query{Function: "a", By: "hour"}, []float64{15, 7, 3}},
		{"daily a", metering.Query{Function: "a", By: "day"}, []float64{22, 3}},
		{"daily all", metering.Query{By: "day"}, []float64{22, 1, 3}},
		{"hourly from/to", metering.Query{Function: "a", From: h0.Add(90 * time.Minute), To: h0.Add(2 * time.Hour)}, []float64{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := u.Usage(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []float64
			for _, b := range bs {
				got = append(got, b.Seconds.Busy)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("busy seconds (-want +got):\n%s", diff)
			}
		})
	}
	day, _ := u.Usage(ctx, metering.Query{Function: "a", By: "day"})
	if b := day[0]; b.Requests != 6 || b.ColdStarts != 3 || b.Starts != 3 || b.Seconds.Idle != 3 || !b.Start.Equal(h0.Truncate(24*time.Hour)) {
		t.Errorf("first day of a = %+v", b)
	}
	if _, err := u.Usage(ctx, metering.Query{By: "week"}); err == nil {
		t.Error("by=week: want an error")
	}
}

func TestUsageRequestRetention(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u := NewUsage(db, UsageOptions{KeepRequests: time.Hour})
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	req := func(at time.Time) metering.Request {
		return metering.Request{Function: "a", Hardware: "cpu", At: at, Status: 200, Duration: time.Second, Queue: time.Millisecond, Cold: true, CostUSD: 0.5}
	}
	if err := u.AddUsage(ctx, nil, []metering.Request{req(t0), req(t0.Add(30 * time.Minute))}); err != nil {
		t.Fatal(err)
	}
	if err := u.AddUsage(ctx, nil, []metering.Request{req(t0.Add(100 * time.Minute))}); err != nil {
		t.Fatal(err)
	}
	got, err := u.Requests(ctx, "a", t0.Add(-time.Hour), t0.Add(3*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].At.Equal(t0.Add(100*time.Minute)) || got[0].Duration != time.Second || !got[0].Cold {
		t.Errorf("requests after retention = %+v, want only the newest (older than an hour dropped)", got)
	}
}

// TestUsageRequestsInChunks: a flush of more records than one multi-row
// INSERT carries (and a remainder) stores every one, fields intact.
func TestUsageRequestsInChunks(t *testing.T) {
	ctx := context.Background()
	u := NewUsage(openTestDB(t), UsageOptions{KeepRequests: time.Hour})
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	n := 2*requestsPerInsert + 7
	reqs := make([]metering.Request, n)
	for i := range reqs {
		reqs[i] = metering.Request{Function: "a", Hardware: "cpu", At: t0.Add(time.Duration(i) * time.Millisecond), Status: 200 + i%3,
			Duration: time.Duration(i) * time.Microsecond, Queue: time.Duration(i), Cold: i%2 == 0, CostUSD: float64(i) / 1e6}
	}
	if err := u.AddUsage(ctx, nil, reqs); err != nil {
		t.Fatal(err)
	}
	got, err := u.Requests(ctx, "a", t0, t0.Add(time.Hour), 10*n)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("stored %d records, want %d", len(got), n)
	}
	for _, g := range got { // newest first
		i := int(g.At.Sub(t0) / time.Millisecond)
		if diff := cmp.Diff(reqs[i], g, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Fatalf("record %d (-want +got):\n%s", i, diff)
		}
	}
}

// BenchmarkAddUsageRequests: one flush of a second's request records at
// 7,000 calls/s (the warm path's rate on a 2-core machine).
func BenchmarkAddUsageRequests(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "ember.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	u := NewUsage(db, UsageOptions{KeepRequests: time.Minute})
	reqs := make([]metering.Request, 7000)
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range reqs {
			reqs[j] = metering.Request{Function: "sim", Hardware: "cpu", At: t0.Add(time.Duration(i)*time.Second + time.Duration(j)*time.Microsecond), Status: 200, Duration: time.Millisecond}
		}
		if err := u.AddUsage(ctx, nil, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/record")
}
