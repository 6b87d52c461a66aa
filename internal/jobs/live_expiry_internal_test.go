package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// fixedClock reads one instant; Get needs only Now.
type fixedClock struct {
	Clock
	now time.Time
}

func (c fixedClock) Now() time.Time { return c.now }

// TestGetLiveJobPastRetention: a finished job stays in the live set for a
// moment after its waiters are woken (retire closes done, then removes
// it). A Get in that moment follows the same retention rule as one that
// reads the stored record, so a prediction past its retention is expired
// either way.
func TestGetLiveJobPastRetention(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		completed time.Time
		expired   bool
	}{
		{"running", time.Time{}, false},
		{"finished within retention", now.Add(-30 * time.Second), false},
		{"finished past retention", now.Add(-2 * time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := api.PredictionProcessing
			if !tc.completed.IsZero() {
				status = api.PredictionSucceeded
			}
			j := &job{id: "p1", rec: Record{ID: "p1", Status: status, CreatedAt: now.Add(-time.Hour), CompletedAt: tc.completed}}
			s := &Service{live: map[string]*job{"p1": j}, clock: fixedClock{now: now}, opts: Options{Retention: time.Minute}}
			p, err := s.Get(context.Background(), "p1")
			var ee *ExpiredError
			if got := errors.As(err, &ee); got != tc.expired {
				t.Fatalf("Get = %v, %v; want expired: %v", p, err, tc.expired)
			}
			if !tc.expired && (p == nil || p.ID != "p1") {
				t.Fatalf("Get = %v, want prediction p1", p)
			}
		})
	}
}
