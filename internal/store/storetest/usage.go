package storetest

import (
	"testing"
	"time"

	"github.com/ember-run/ember/internal/metering"
)

func testUsage(t *testing.T, a, b Handle) {
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	bucket := func(fn string, start time.Time, busy float64, reqs int64) metering.Bucket {
		return metering.Bucket{Function: fn, Hardware: "cpu", Start: start, Seconds: metering.Seconds{Busy: busy, Idle: 1},
			CostUSD: 0.5, Requests: reqs, ColdStarts: 1, DurationSeconds: 2, QueueSeconds: 0.25, AttributedUSD: 0.125, BusyPeriods: 1}
	}
	req := metering.Request{Function: "echo", Hardware: "cpu", At: hour.Add(time.Minute), Status: 200,
		Duration: 1500 * time.Microsecond, Queue: time.Millisecond, Cold: true, CostUSD: 0.01}
	// Two nodes flush into the same rows: the rollups are their sum.
	must(t, a.Usage.AddUsage(ctx(t), []metering.Bucket{bucket("echo", hour, 10, 3)}, []metering.Request{req}))
	must(t, b.Usage.AddUsage(ctx(t), []metering.Bucket{bucket("echo", hour.Add(10*time.Minute), 5, 2), bucket("ocr", hour.Add(time.Hour), 1, 1)}, nil))
	must(t, a.Usage.AddUsage(ctx(t), nil, nil))

	tests := []struct {
		name string
		q    metering.Query
		want []metering.Bucket
	}{
		{"hourly", metering.Query{By: metering.ByHour},
			[]metering.Bucket{sum(bucket("echo", hour, 15, 5), 2), bucket("ocr", hour.Add(time.Hour), 1, 1)}},
		{"daily", metering.Query{By: metering.ByDay},
			[]metering.Bucket{sum(bucket("echo", hour.Truncate(24*time.Hour), 15, 5), 2), bucket("ocr", hour.Truncate(24*time.Hour), 1, 1)}},
		{"one function", metering.Query{By: metering.ByHour, Function: "ocr"}, []metering.Bucket{bucket("ocr", hour.Add(time.Hour), 1, 1)}},
		{"from overlaps", metering.Query{By: metering.ByHour, From: hour.Add(30 * time.Minute)},
			[]metering.Bucket{sum(bucket("echo", hour, 15, 5), 2), bucket("ocr", hour.Add(time.Hour), 1, 1)}},
		{"to excludes", metering.Query{By: metering.ByHour, To: hour.Add(time.Hour)}, []metering.Bucket{sum(bucket("echo", hour, 15, 5), 2)}},
	}
	for _, tc := range tests {
		got, err := b.Usage.Usage(ctx(t), tc.q)
		must(t, err)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d buckets, want %d: %+v", tc.name, len(got), len(tc.want), got)
		}
		for i := range got {
			if !got[i].Start.Equal(tc.want[i].Start) {
				t.Fatalf("%s[%d]: start %v, want %v", tc.name, i, got[i].Start, tc.want[i].Start)
			}
			got[i].Start = tc.want[i].Start
			if got[i] != tc.want[i] {
				t.Fatalf("%s[%d] = %+v\nwant %+v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
	if _, err := a.Usage.Usage(ctx(t), metering.Query{By: "week"}); err == nil {
		t.Fatal("by=week accepted")
	}
	reqs, err := b.Usage.Requests(ctx(t), "echo", hour, hour.Add(time.Hour), 10)
	must(t, err)
	if len(reqs) != 1 || !reqs[0].At.Equal(req.At) || reqs[0].Duration != req.Duration || reqs[0].Queue != req.Queue ||
		!reqs[0].Cold || reqs[0].Status != 200 || reqs[0].CostUSD != 0.01 {
		t.Fatalf("requests = %+v", reqs)
	}

	// The count bound: writes from both nodes, more records than it
	// allows, leave only the newest (the one above among the dropped).
	var more []metering.Request
	for i := range UsageMaxRequests + 2 {
		r := req
		r.At = hour.Add(2*time.Minute + time.Duration(i)*time.Second)
		r.Status = 201 + i
		more = append(more, r)
	}
	must(t, a.Usage.AddUsage(ctx(t), nil, more[:3]))
	must(t, b.Usage.AddUsage(ctx(t), nil, more[3:]))
	reqs, err = a.Usage.Requests(ctx(t), "echo", hour, hour.Add(time.Hour), 100)
	must(t, err)
	if len(reqs) != UsageMaxRequests {
		t.Fatalf("%d request records kept, want the bound, %d: %+v", len(reqs), UsageMaxRequests, reqs)
	}
	for i, r := range reqs { // newest first
		if want := more[len(more)-1-i]; !r.At.Equal(want.At) || r.Status != want.Status {
			t.Fatalf("record %d = %v status %d, want %v status %d (the newest kept)", i, r.At, r.Status, want.At, want.Status)
		}
	}

	// A lowered bound drops the excess a batch at a time, oldest first.
	count := func() int {
		reqs, err := a.Usage.Requests(ctx(t), "", hour, hour.Add(time.Hour), 1000)
		must(t, err)
		return len(reqs)
	}
	var many []metering.Request
	for i := range 10 {
		r := req
		r.At = hour.Add(3*time.Minute + time.Duration(i)*time.Second)
		many = append(many, r)
	}
	low := b.UsageWith(2, 3)
	must(t, low.AddUsage(ctx(t), nil, many))
	if n := count(); n != UsageMaxRequests+len(many)-3 {
		t.Fatalf("%d records after a write over a lowered bound, want %d (one batch of 3 dropped)", n, UsageMaxRequests+len(many)-3)
	}
	for range 10 {
		must(t, low.AddUsage(ctx(t), nil, many[9:]))
	}
	kept, err := a.Usage.Requests(ctx(t), "", hour, hour.Add(time.Hour), 1000)
	must(t, err)
	if len(kept) != 2 || !kept[0].At.Equal(many[9].At) || !kept[1].At.Equal(many[9].At) {
		t.Fatalf("records after more writes = %+v, want the bound, 2, both the newest written (%v)", kept, many[9].At)
	}

	// Records off (a bound below 0): a write stores none of its records
	// and the first drops those stored before; the rollups still add up.
	off := b.UsageWith(-1, 0)
	must(t, off.AddUsage(ctx(t), []metering.Bucket{bucket("echo", hour, 1, 1)}, more[:1]))
	if n := count(); n != 0 {
		t.Fatalf("%d request records kept with records off, want 0", n)
	}
	got, err := a.Usage.Usage(ctx(t), metering.Query{By: metering.ByHour, Function: "echo"})
	must(t, err)
	if len(got) != 1 || got[0].Requests != 6 {
		t.Fatalf("rollup with records off = %+v, want one hour of 6 requests", got)
	}
	// Only the first: another node's records written since stay.
	must(t, a.Usage.AddUsage(ctx(t), nil, more[:2]))
	must(t, off.AddUsage(ctx(t), []metering.Bucket{bucket("echo", hour, 1, 1)}, nil))
	if n := count(); n != 2 {
		t.Fatalf("%d records after a later write with records off, want the 2 written since", n)
	}
}

// sum is b counted from n flushes' worth of the constant fields.
func sum(b metering.Bucket, n int) metering.Bucket {
	f := float64(n)
	b.Seconds.Idle *= f
	b.CostUSD *= f
	b.ColdStarts *= int64(n)
	b.DurationSeconds *= f
	b.QueueSeconds *= f
	b.AttributedUSD *= f
	b.BusyPeriods *= int64(n)
	return b
}
