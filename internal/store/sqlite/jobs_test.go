package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/store/sqlite"
)

func openJobs(t *testing.T) *sqlite.Jobs {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlite.NewJobs(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func update(t *testing.T, st *sqlite.Jobs, fn func(jobs.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func rec(id, key string) *jobs.Record {
	return &jobs.Record{ID: id, Function: "f", Status: "starting", Input: json.RawMessage(`{}`), CreatedAt: t0, IdempotencyKey: key,
		WebhookEvents: []string{"start", "completed"}}
}

func TestFinishAtMostOnce(t *testing.T) {
	st := openJobs(t)
	ctx := context.Background()
	update(t, st, func(tx jobs.Tx) error { _, err := tx.Insert(rec("a", ""), t0); return err })
	var results []bool
	for _, status := range []string{"succeeded", "failed", "canceled"} {
		update(t, st, func(tx jobs.Tx) error {
			r := rec("a", "")
			r.Status, r.CompletedAt, r.Output = status, t0.Add(time.Second), json.RawMessage(`"`+status+`"`)
			ok, err := tx.Finish(r)
			results = append(results, ok)
			return err
		})
	}
	if want := []bool{true, false, false}; results[0] != want[0] || results[1] || results[2] {
		t.Errorf("Finish results = %v, want %v", results, want)
	}
	var progressed bool
	update(t, st, func(tx jobs.Tx) (err error) {
		progressed, err = tx.Progress(&jobs.Record{ID: "a", Status: "processing", Attempts: 9})
		return err
	})
	got, err := st.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if progressed || got.Status != "succeeded" || string(got.Output) != `"succeeded"` || got.Attempts != 0 {
		t.Errorf("after late writes: progressed=%v %s %s attempts %d", progressed, got.Status, got.Output, got.Attempts)
	}
	if len(got.WebhookEvents) != 2 || !got.CreatedAt.Equal(t0) || !got.CompletedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("round trip: %+v", got)
	}
	if _, err := st.Get(ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get(nope) = %v", err)
	}
}

func TestIdempotencyWindow(t *testing.T) {
	st := openJobs(t)
	tests := []struct {
		name, id string
		since    time.Time
		want     string
	}{
		{"first use inserts", "a", t0, ""},
		{"repeat within window returns original", "b", t0, "a"},
		{"after the window inserts anew", "c", t0.Add(time.Hour), ""},
		{"then the new one is the original", "d", t0, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			update(t, st, func(tx jobs.Tx) (err error) { got, err = tx.Insert(rec(tt.id, "k"), tt.since); return err })
			if got != tt.want {
				t.Errorf("Insert = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWebhookOutboxOrder(t *testing.T) {
	st := openJobs(t)
	ctx := context.Background()
	update(t, st, func(tx jobs.Tx) error {
		for _, w := range []jobs.Webhook{{JobID: "a", Event: "start"}, {JobID: "b", Event: "start"}, {JobID: "a", Event: "completed"}} {
			w.URL, w.Body, w.NextAt, w.CreatedAt = "http://x", []byte(`{}`), t0, t0
			if err := tx.AddWebhook(&w); err != nil {
				return err
			}
		}
		return nil
	})
	due, err := st.DueWebhooks(ctx, t0, 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("due = %d, %v; want one per job", len(due), err)
	}
	for _, w := range due {
		if w.Event != "start" {
			t.Errorf("job %s: first due is %s, want start", w.JobID, w.Event)
		}
	}
	// a's start fails and backs off: its completed waits behind it.
	update(t, st, func(tx jobs.Tx) error {
		return tx.WebhookRetry(due[0].ID, 1, t0.Add(time.Minute), jobs.Attempt{At: t0, Error: "down"})
	})
	update(t, st, func(tx jobs.Tx) error {
		return tx.WebhookDone(due[1].ID, 1, api.DeliveryDelivered, jobs.Attempt{At: t0, StatusCode: 200})
	})
	if due, _ := st.DueWebhooks(ctx, t0, 10); len(due) != 0 {
		t.Errorf("due while backing off = %+v", due)
	}
	due, _ = st.DueWebhooks(ctx, t0.Add(time.Minute), 10)
	if len(due) != 1 || due[0].Event != "start" || due[0].Attempts != 1 {
		t.Errorf("due after backoff = %+v", due)
	}
}

func TestSweepAndSecret(t *testing.T) {
	st := openJobs(t)
	ctx := context.Background()
	update(t, st, func(tx jobs.Tx) error {
		for i, id := range []string{"old", "new"} {
			if _, err := tx.Insert(rec(id, ""), t0); err != nil {
				return err
			}
			r := rec(id, "")
			r.Status, r.Output, r.CompletedAt = "succeeded", json.RawMessage(`1`), t0.Add(time.Duration(i)*time.Hour)
			if _, err := tx.Finish(r); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	update(t, st, func(tx jobs.Tx) (err error) {
		n, err = tx.Sweep(t0.Add(time.Minute), t0.Add(-time.Hour), t0)
		return err
	})
	old, _ := st.Get(ctx, "old")
	fresh, _ := st.Get(ctx, "new")
	if n != 1 || !old.DataRemoved || old.Output != nil || fresh.DataRemoved {
		t.Errorf("sweep: n=%d old=%+v new removed=%v", n, old, fresh.DataRemoved)
	}
	calls := 0
	gen := func() (string, error) { calls++; return "whsec_c2VjcmV0", nil }
	a, err := st.WebhookSecret(ctx, gen)
	b, _ := st.WebhookSecret(ctx, gen)
	if err != nil || a != "whsec_c2VjcmV0" || b != a || calls != 1 {
		t.Errorf("secret %q %q (%v), generated %d times", a, b, err, calls)
	}
	// The stream token key is a separate setting: it never equals the
	// webhook secret an admin may read.
	k, err := st.StreamTokenKey(ctx, func() (string, error) { return "c3RyZWFta2V5", nil })
	k2, _ := st.StreamTokenKey(ctx, func() (string, error) { return "b3RoZXI=", nil })
	if err != nil || k != "c3RyZWFta2V5" || k2 != k {
		t.Errorf("stream token key %q %q (%v); want the first generated, kept", k, k2, err)
	}
	if a2, _ := st.WebhookSecret(ctx, gen); a2 != a {
		t.Errorf("webhook secret changed to %q after the stream key was stored", a2)
	}
}

func TestJobOwner(t *testing.T) {
	st := openJobs(t)
	ctx := context.Background()
	for _, j := range []struct{ id, owner string }{{"a", "alice"}, {"b", "bob"}, {"c", "alice"}, {"d", ""}} {
		r := rec(j.id, "")
		r.Owner = j.owner
		update(t, st, func(tx jobs.Tx) error { _, err := tx.Insert(r, t0); return err })
	}
	got, err := st.Get(ctx, "b")
	if err != nil || got.Owner != "bob" {
		t.Fatalf("Get(b) = %+v, %v; want owner bob", got, err)
	}
	for _, tt := range []struct {
		owner string
		want  []string
	}{{"alice", []string{"c", "a"}}, {"bob", []string{"b"}}, {"", []string{"d", "c", "b", "a"}}, {"carol", nil}} {
		recs, err := st.List(ctx, jobs.ListQuery{Owner: tt.owner, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("List(owner %q) = %v, want %v", tt.owner, ids, tt.want)
		}
	}
}

// TestLeases: Claim takes only jobs no worker holds (never its own), and
// raises the fencing token; Renew extends the owner's leases and reports
// cancel requests; Progress and Finish need the current lease; Release
// frees the owner's jobs at once.
func TestLeases(t *testing.T) {
	st := openJobs(t)
	ctx := context.Background()
	leased := func(id, owner string, until time.Time) *jobs.Record {
		r := rec(id, "")
		r.Lease = jobs.Lease{Owner: owner, Token: 1, Until: until}
		return r
	}
	update(t, st, func(tx jobs.Tx) error {
		for _, r := range []*jobs.Record{leased("a", "w1", t0.Add(time.Minute)), leased("b", "w1", t0), leased("c", "", time.Time{}), leased("d", "w2", t0)} {
			if _, err := tx.Insert(r, t0); err != nil {
				return err
			}
		}
		return nil
	})
	claim := func(owner string, now time.Time, limit int) (ids []string, recs []*jobs.Record) {
		update(t, st, func(tx jobs.Tx) (err error) {
			recs, err = tx.Claim(owner, now, now.Add(time.Minute), limit)
			return err
		})
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return ids, recs
	}
	// At t0+1s: a is w1's until t0+1m; b's lease (w1) and d's (w2) ended; c has none.
	if ids, _ := claim("w2", t0.Add(time.Second), 10); !slices.Equal(ids, []string{"b", "c"}) {
		t.Errorf("w2 claimed %v, want [b c] (not a: held; not d: its own)", ids)
	}
	if ids, recs := claim("w3", t0.Add(time.Second), 1); !slices.Equal(ids, []string{"d"}) ||
		recs[0].Lease.Owner != "w3" || recs[0].Lease.Token != 2 || !recs[0].Lease.Until.Equal(t0.Add(time.Second+time.Minute)) {
		t.Errorf("w3 claimed %v, want d leased to w3 with token 2", ids)
	}

	// w1 lost b to w2: its writes under the old lease change nothing.
	old := leased("b", "w1", t0)
	old.Status, old.Attempts = "processing", 5
	var progressed, finished bool
	var cancelled bool
	update(t, st, func(tx jobs.Tx) (err error) {
		if progressed, err = tx.Progress(old); err != nil {
			return err
		}
		old.Status = "succeeded"
		if finished, err = tx.Finish(old); err != nil {
			return err
		}
		cancelled, err = tx.RequestCancel("a")
		return err
	})
	if progressed || finished || !cancelled {
		t.Errorf("stale Progress %v, stale Finish %v, RequestCancel %v; want false, false, true", progressed, finished, cancelled)
	}
	var w1 []jobs.LeaseState
	update(t, st, func(tx jobs.Tx) (err error) {
		w1, err = tx.Renew("w1", t0.Add(time.Hour))
		return err
	})
	if want := []jobs.LeaseState{{ID: "a", Token: 1, CancelRequested: true}}; !slices.Equal(w1, want) {
		t.Errorf("w1 renewed %+v, want %+v", w1, want)
	}
	if r, _ := st.Get(ctx, "a"); !r.Lease.Until.Equal(t0.Add(time.Hour)) {
		t.Errorf("a's lease until %v after renew", r.Lease.Until)
	}

	// The current holder's Finish counts, and ends the lease.
	cur := leased("b", "w2", time.Time{})
	cur.Lease.Token, cur.Status = 2, "succeeded"
	update(t, st, func(tx jobs.Tx) (err error) {
		finished, err = tx.Finish(cur)
		return err
	})
	if r, _ := st.Get(ctx, "b"); !finished || r.Status != "succeeded" || r.Lease.Owner != "" {
		t.Errorf("holder's Finish = %v, record %s leased to %q", finished, r.Status, r.Lease.Owner)
	}

	// Released, w1's job is claimable before its lease would have ended.
	update(t, st, func(tx jobs.Tx) error { return tx.Release("w1") })
	if ids, recs := claim("w2", t0.Add(time.Second), 10); !slices.Equal(ids, []string{"a"}) || !recs[0].CancelRequested {
		t.Errorf("after release w2 claimed %v, want a (with its cancel request)", ids)
	}
}
