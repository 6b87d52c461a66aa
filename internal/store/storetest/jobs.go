package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

func newJob(id string, lease jobs.Lease) *jobs.Record {
	return &jobs.Record{ID: id, Function: "echo", Status: "starting", Input: []byte(`{"x":1}`),
		CreatedAt: t0, Webhook: "https://example.test/hook", WebhookEvents: []string{"start", "completed"},
		Owner: "key1", Lease: lease}
}

// update runs fn in one transaction of s.
func update(t *testing.T, s Jobs, fn func(tx jobs.Tx) error) {
	t.Helper()
	must(t, s.Update(ctx(t), fn))
}

func testJobsLifecycle(t *testing.T, a, b Handle) {
	lease := jobs.Lease{Owner: "n1", Token: 1, Until: t0.Add(30 * time.Second)}
	r := newJob("j1", lease)
	update(t, a.Jobs, func(tx jobs.Tx) error { _, err := tx.Insert(r, t0); return err })
	got, err := b.Jobs.Get(ctx(t), "j1")
	must(t, err)
	if got.Status != "starting" || string(got.Input) != `{"x":1}` || !sameLease(got.Lease, lease) || got.Owner != "key1" ||
		len(got.WebhookEvents) != 2 || !got.CreatedAt.Equal(t0) || got.Output != nil {
		t.Fatalf("read back %+v", got)
	}
	if _, err := a.Jobs.Get(ctx(t), "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	// Leased to n1 and not expired: nobody else claims it.
	var claimed []*jobs.Record
	update(t, b.Jobs, func(tx jobs.Tx) (err error) { claimed, err = tx.Claim("n2", t0, t0.Add(time.Minute), 10); return err })
	if len(claimed) != 0 {
		t.Fatalf("n2 claimed a live lease: %+v", claimed)
	}
	// Progress only with the current lease.
	r.Status, r.Attempts, r.StartedAt = "processing", 1, t0.Add(time.Second)
	steps := []struct {
		name  string
		lease jobs.Lease
		want  bool
	}{
		{"wrong owner", jobs.Lease{Owner: "n2", Token: 1}, false},
		{"old token", jobs.Lease{Owner: "n1", Token: 0}, false},
		{"holder", lease, true},
	}
	for _, st := range steps {
		r.Lease = st.lease
		var ok bool
		update(t, a.Jobs, func(tx jobs.Tx) (err error) { ok, err = tx.Progress(r); return err })
		if ok != st.want {
			t.Fatalf("progress by %s: %v, want %v", st.name, ok, st.want)
		}
	}
	// A cancel asked on another node shows at the holder's heartbeat.
	var asked bool
	update(t, b.Jobs, func(tx jobs.Tx) (err error) { asked, err = tx.RequestCancel("j1"); return err })
	var leases []jobs.LeaseState
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { leases, err = tx.Renew("n1", t0.Add(time.Hour)); return err })
	if !asked || len(leases) != 1 || leases[0] != (jobs.LeaseState{ID: "j1", Token: 1, CancelRequested: true}) {
		t.Fatalf("cancel asked=%v, leases %+v", asked, leases)
	}
	// Finish: once, by the holder.
	r.Lease = lease
	r.Status, r.Output, r.CompletedAt, r.PredictTime, r.Events = "succeeded", []byte(`"ok"`), t0.Add(2*time.Second), time.Second, []byte(`[]`)
	for i, want := range []bool{true, false} {
		var ok bool
		update(t, a.Jobs, func(tx jobs.Tx) (err error) { ok, err = tx.Finish(r); return err })
		if ok != want {
			t.Fatalf("finish #%d: %v, want %v", i+1, ok, want)
		}
	}
	got, err = b.Jobs.Get(ctx(t), "j1")
	must(t, err)
	if got.Status != "succeeded" || string(got.Output) != `"ok"` || got.Lease.Owner != "" || !got.Lease.Until.IsZero() ||
		got.PredictTime != time.Second || !got.CompletedAt.Equal(r.CompletedAt) || got.Attempts != 1 {
		t.Fatalf("finished %+v", got)
	}
	if ok := false; true {
		update(t, b.Jobs, func(tx jobs.Tx) (err error) { ok, err = tx.RequestCancel("j1"); return err })
		if ok {
			t.Fatal("cancel of a finished job accepted")
		}
	}
	un, err := a.Jobs.Unfinished(ctx(t))
	must(t, err)
	if len(un) != 0 {
		t.Fatalf("unfinished = %d", len(un))
	}
	// Sweep purges, then deletes.
	var purged int
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { purged, err = tx.Sweep(t0.Add(time.Hour), t0, t0); return err })
	got, err = a.Jobs.Get(ctx(t), "j1")
	must(t, err)
	if purged != 1 || !got.DataRemoved || got.Input != nil || got.Output != nil {
		t.Fatalf("purged %d: %+v", purged, got)
	}
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { _, err = tx.Sweep(t0.Add(time.Hour), t0.Add(time.Hour), t0); return err })
	if _, err := a.Jobs.Get(ctx(t), "j1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func testJobsIdempotency(t *testing.T, a, b Handle) {
	insert := func(s Jobs, id string, since time.Time) string {
		r := newJob(id, jobs.Lease{Owner: "n1", Token: 1, Until: t0})
		r.IdempotencyKey = "key1:abc"
		var existing string
		update(t, s, func(tx jobs.Tx) (err error) { existing, err = tx.Insert(r, since); return err })
		return existing
	}
	if got := insert(a.Jobs, "j1", t0); got != "" {
		t.Fatalf("first insert returned %q", got)
	}
	if got := insert(b.Jobs, "j2", t0); got != "j1" {
		t.Fatalf("same key again: %q, want j1", got)
	}
	// A key older than keySince names nothing: a new job takes it.
	if got := insert(b.Jobs, "j3", t0.Add(time.Second)); got != "" {
		t.Fatalf("expired key: %q", got)
	}
	if got := insert(a.Jobs, "j4", t0); got != "j3" {
		t.Fatalf("after re-use: %q, want j3", got)
	}
}

func testJobsExpiredLease(t *testing.T, a, b Handle) {
	for i := range 3 {
		update(t, a.Jobs, func(tx jobs.Tx) error {
			_, err := tx.Insert(newJob(fmt.Sprintf("j%d", i), jobs.Lease{Owner: "n1", Token: 1, Until: t0.Add(10 * time.Second)}), t0)
			return err
		})
	}
	tests := []struct {
		name  string
		owner string
		now   time.Time
		limit int
		want  []string
	}{
		{"live lease", "n2", t0.Add(9 * time.Second), 10, nil},
		{"own lease is renewed, not claimed", "n1", t0.Add(20 * time.Second), 10, nil},
		{"expired, limited, oldest first", "n2", t0.Add(10 * time.Second), 2, []string{"j0", "j1"}},
		{"the rest", "n3", t0.Add(11 * time.Second), 10, []string{"j2"}},
	}
	for _, tc := range tests {
		var got []*jobs.Record
		update(t, b.Jobs, func(tx jobs.Tx) (err error) {
			got, err = tx.Claim(tc.owner, tc.now, tc.now.Add(time.Minute), tc.limit)
			return err
		})
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
			if r.Lease.Owner != tc.owner || r.Lease.Token != 2 || !r.Lease.Until.Equal(tc.now.Add(time.Minute)) {
				t.Fatalf("%s: lease %+v", tc.name, r.Lease)
			}
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Fatalf("%s: claimed %v, want %v", tc.name, ids, tc.want)
		}
	}
	// The dead node's writes are fenced off.
	old := newJob("j0", jobs.Lease{Owner: "n1", Token: 1})
	old.Status = "succeeded"
	var ok bool
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { ok, err = tx.Finish(old); return err })
	if ok {
		t.Fatal("a lost lease finished the job")
	}
	// Released leases are claimable at once.
	update(t, b.Jobs, func(tx jobs.Tx) error { return tx.Release("n2") })
	var got []*jobs.Record
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { got, err = tx.Claim("n1", t0, t0.Add(time.Minute), 10); return err })
	if len(got) != 2 || got[0].Lease.Token != 3 {
		t.Fatalf("after release: %d claimed, %+v", len(got), got)
	}
}

func testJobsList(t *testing.T, a, b Handle) {
	for i, fn := range []string{"echo", "ocr", "echo"} {
		r := newJob(fmt.Sprintf("j%d", i), jobs.Lease{})
		r.Function = fn
		if i == 2 {
			r.Input = []byte(`"` + string(make([]byte, 0)) + `0123456789"`)
			r.Owner = "key2"
		}
		update(t, a.Jobs, func(tx jobs.Tx) error { _, err := tx.Insert(r, t0); return err })
	}
	tests := []struct {
		name string
		q    jobs.ListQuery
		want string
	}{
		{"all newest first", jobs.ListQuery{Limit: 10}, "[j2 j1 j0]"},
		{"limit", jobs.ListQuery{Limit: 1}, "[j2]"},
		{"before", jobs.ListQuery{Before: "j2", Limit: 10}, "[j1 j0]"},
		{"function", jobs.ListQuery{Function: "echo", Limit: 10}, "[j2 j0]"},
		{"owner", jobs.ListQuery{Owner: "key2", Limit: 10}, "[j2]"},
		{"owner and before", jobs.ListQuery{Owner: "key1", Before: "j1", Limit: 10}, "[j0]"},
	}
	for _, tc := range tests {
		got, err := b.Jobs.List(ctx(t), tc.q)
		must(t, err)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if fmt.Sprint(ids) != tc.want {
			t.Fatalf("%s: %v, want %s", tc.name, ids, tc.want)
		}
	}
	got, err := b.Jobs.List(ctx(t), jobs.ListQuery{Limit: 10, MaxField: 8})
	must(t, err)
	if got[0].Input != nil || got[0].Omitted["input"] != 12 || string(got[1].Input) != `{"x":1}` || got[1].Omitted != nil {
		t.Fatalf("sized list: %+v / %+v", got[0], got[1])
	}
}

func testWebhookOutbox(t *testing.T, a, b Handle) {
	update(t, a.Jobs, func(tx jobs.Tx) error {
		for _, w := range []jobs.Webhook{
			{JobID: "j1", Event: "start", URL: "u", Body: []byte("1"), NextAt: t0, CreatedAt: t0},
			{JobID: "j1", Event: "completed", URL: "u", Body: []byte("2"), NextAt: t0, CreatedAt: t0},
			{JobID: "j2", Event: "completed", URL: "u", Body: []byte("3"), NextAt: t0.Add(time.Minute), CreatedAt: t0},
		} {
			if err := tx.AddWebhook(&w); err != nil {
				return err
			}
		}
		return nil
	})
	due, err := b.Jobs.DueWebhooks(ctx(t), t0, 10)
	must(t, err)
	// One per job, its oldest: j1's completed waits for its start.
	if len(due) != 1 || due[0].JobID != "j1" || due[0].Event != "start" || string(due[0].Body) != "1" || !due[0].CreatedAt.Equal(t0) {
		t.Fatalf("due = %+v", due)
	}
	update(t, b.Jobs, func(tx jobs.Tx) error {
		return tx.WebhookRetry(due[0].ID, 1, t0.Add(time.Hour), jobs.Attempt{At: t0, StatusCode: 503, Error: "503"})
	})
	due2, err := a.Jobs.DueWebhooks(ctx(t), t0.Add(2*time.Minute), 10)
	must(t, err)
	if len(due2) != 1 || due2[0].JobID != "j2" {
		t.Fatalf("after retry: %+v", due2)
	}
	update(t, a.Jobs, func(tx jobs.Tx) error {
		return tx.WebhookDone(due2[0].ID, 1, api.DeliveryDelivered, jobs.Attempt{At: t0.Add(2 * time.Minute), StatusCode: 200})
	})
	due3, err := a.Jobs.DueWebhooks(ctx(t), t0.Add(2*time.Hour), 10)
	must(t, err)
	if len(due3) != 1 || due3[0].Event != "start" || due3[0].Attempts != 1 {
		t.Fatalf("retried: %+v", due3)
	}
	update(t, a.Jobs, func(tx jobs.Tx) error {
		return tx.WebhookDone(due3[0].ID, 2, api.DeliveryDelivered, jobs.Attempt{At: t0.Add(2 * time.Hour), StatusCode: 204})
	})
	due4, err := b.Jobs.DueWebhooks(ctx(t), t0.Add(3*time.Hour), 10)
	must(t, err)
	if len(due4) != 1 || due4[0].Event != "completed" || due4[0].JobID != "j1" {
		t.Fatalf("next of j1: %+v", due4)
	}
}

// testWebhookDeliveries: a settled webhook leaves the outbox but keeps
// its outcome (attempts, status, error, time), without its body; settled
// ones are pruned to jobs.DeliveriesKept per job and go with the job.
func testWebhookDeliveries(t *testing.T, a, b Handle) {
	n := jobs.DeliveriesKept + 3
	lease := jobs.Lease{Owner: "n1", Token: 1, Until: t0.Add(time.Minute)}
	r := newJob("j1", lease)
	update(t, a.Jobs, func(tx jobs.Tx) error { _, err := tx.Insert(r, t0); return err })
	r.Status, r.CompletedAt, r.Output = "succeeded", t0.Add(time.Second), []byte(`1`)
	var finished bool
	update(t, a.Jobs, func(tx jobs.Tx) (err error) { finished, err = tx.Finish(r); return err })
	if !finished {
		t.Fatal("job not finished")
	}
	update(t, a.Jobs, func(tx jobs.Tx) error {
		for i := range n {
			w := jobs.Webhook{JobID: "j1", Event: fmt.Sprintf("e%d", i), URL: "http://hook", Body: []byte("{}"), NextAt: t0, CreatedAt: t0}
			if err := tx.AddWebhook(&w); err != nil {
				return err
			}
		}
		return nil
	})
	due, err := a.Jobs.DueWebhooks(ctx(t), t0, 10)
	must(t, err)
	if len(due) != 1 || due[0].Event != "e0" {
		t.Fatalf("due = %+v", due)
	}
	failed := jobs.Attempt{At: t0.Add(time.Second), StatusCode: 503, Error: "receiver answered HTTP 503"}
	update(t, a.Jobs, func(tx jobs.Tx) error { return tx.WebhookRetry(due[0].ID, 1, t0.Add(time.Minute), failed) })
	ds, err := b.Jobs.Deliveries(ctx(t), "j1", 100)
	must(t, err)
	if len(ds) != n || ds[0].Event != "e0" || ds[0].Outcome != api.DeliveryPending || ds[0].Attempts != 1 || ds[0].StatusCode != 503 ||
		ds[0].LastError != failed.Error || !ds[0].LastAttemptAt.Equal(failed.At) || !ds[0].NextAt.Equal(t0.Add(time.Minute)) ||
		!ds[1].LastAttemptAt.IsZero() || ds[1].Outcome != api.DeliveryPending {
		t.Fatalf("after a failed attempt: %d deliveries, first %+v, second %+v", len(ds), ds[0], ds[1])
	}
	ok := jobs.Attempt{At: t0.Add(time.Minute), StatusCode: 200}
	update(t, b.Jobs, func(tx jobs.Tx) error { return tx.WebhookDone(due[0].ID, 2, api.DeliveryDelivered, ok) })
	// Settling twice (two nodes racing) keeps the first outcome.
	update(t, a.Jobs, func(tx jobs.Tx) error {
		return tx.WebhookDone(due[0].ID, 9, api.DeliveryAbandoned, jobs.Attempt{At: t0.Add(time.Hour)})
	})
	ds, err = a.Jobs.Deliveries(ctx(t), "j1", 100)
	must(t, err)
	if d := ds[0]; d.Outcome != api.DeliveryDelivered || d.Attempts != 2 || d.StatusCode != 200 || d.LastError != "" || !d.LastAttemptAt.Equal(ok.At) {
		t.Fatalf("delivered: %+v", d)
	}
	// The next one is due now that e0 settled.
	due, err = b.Jobs.DueWebhooks(ctx(t), t0.Add(time.Minute), 10)
	must(t, err)
	if len(due) != 1 || due[0].Event != "e1" {
		t.Fatalf("after e0 settled, due = %+v", due)
	}
	// Settle every one: the settled ones are pruned to DeliveriesKept,
	// the newest kept, and none is due any more.
	for i := 1; i < n; i++ {
		due, err := a.Jobs.DueWebhooks(ctx(t), t0.Add(time.Hour), 10)
		must(t, err)
		if len(due) != 1 {
			t.Fatalf("round %d: due = %+v", i, due)
		}
		update(t, a.Jobs, func(tx jobs.Tx) error {
			return tx.WebhookDone(due[0].ID, 5, api.DeliveryAbandoned, jobs.Attempt{At: t0.Add(time.Hour), Error: "connection refused"})
		})
	}
	if due, _ := a.Jobs.DueWebhooks(ctx(t), t0.Add(24*time.Hour), 10); len(due) != 0 {
		t.Fatalf("settled ones still due: %+v", due)
	}
	ds, err = b.Jobs.Deliveries(ctx(t), "j1", 100)
	must(t, err)
	if len(ds) != jobs.DeliveriesKept || ds[0].Event != "e3" || ds[len(ds)-1].Event != fmt.Sprintf("e%d", n-1) ||
		ds[len(ds)-1].Outcome != api.DeliveryAbandoned || ds[len(ds)-1].LastError != "connection refused" {
		t.Fatalf("pruned: %d deliveries, first %+v, last %+v", len(ds), ds[0], ds[len(ds)-1])
	}
	if ds, _ := b.Jobs.Deliveries(ctx(t), "j1", 2); len(ds) != 2 || ds[1].Event != fmt.Sprintf("e%d", n-1) {
		t.Fatalf("limit 2: %+v", ds)
	}
	// The job's deletion (retention) takes its settled deliveries along.
	update(t, a.Jobs, func(tx jobs.Tx) error {
		_, err := tx.Sweep(t0.Add(48*time.Hour), t0.Add(48*time.Hour), t0)
		return err
	})
	if ds, _ := b.Jobs.Deliveries(ctx(t), "j1", 100); len(ds) != 0 {
		t.Fatalf("after the job's deletion: %d deliveries", len(ds))
	}
}

func testJobsSettings(t *testing.T, a, b Handle) {
	gen := func(v string) func() (string, error) { return func() (string, error) { return v, nil } }
	s1, err := a.Jobs.WebhookSecret(ctx(t), gen("first"))
	must(t, err)
	s2, err := b.Jobs.WebhookSecret(ctx(t), gen("second"))
	must(t, err)
	k1, err := b.Jobs.StreamTokenKey(ctx(t), gen("key"))
	must(t, err)
	if s1 != "first" || s2 != "first" || k1 != "key" {
		t.Fatalf("secret %q/%q, key %q", s1, s2, k1)
	}
	if _, err := a.Jobs.StreamTokenKey(ctx(t), func() (string, error) { return "", errors.New("no entropy") }); err != nil {
		t.Fatalf("stored key regenerated: %v", err)
	}
}

// testJobsRace: two nodes, two workers each, race over 200 jobs; a third
// node claimed 20 of them and died. Every job completes exactly once and
// none is lost; the dead node's late writes change nothing.
func testJobsRace(t *testing.T, a, b Handle) {
	const n = 200
	update(t, a.Jobs, func(tx jobs.Tx) error {
		for i := range n {
			if _, err := tx.Insert(newJob(fmt.Sprintf("j%03d", i), jobs.Lease{}), t0); err != nil {
				return err
			}
		}
		return nil
	})
	var dead []*jobs.Record
	update(t, b.Jobs, func(tx jobs.Tx) (err error) { dead, err = tx.Claim("dead", t0, t0.Add(time.Second), 20); return err })
	if len(dead) != 20 {
		t.Fatalf("dead node claimed %d", len(dead))
	}
	now := t0.Add(2 * time.Second) // the dead node's leases have ended
	var mu sync.Mutex
	finished := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w, h := range []Handle{a, a, b, b} {
		owner := fmt.Sprintf("node%d", w/2)
		wg.Go(func() {
			for {
				var got []*jobs.Record
				if err := h.Jobs.Update(ctx(t), func(tx jobs.Tx) (err error) {
					got, err = tx.Claim(owner, now, now.Add(time.Minute), 5)
					return err
				}); err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				for _, r := range got {
					r.Status, r.CompletedAt, r.Output = "succeeded", now, []byte(`"`+owner+`"`)
					var ok bool
					if err := h.Jobs.Update(ctx(t), func(tx jobs.Tx) (err error) { ok, err = tx.Finish(r); return err }); err != nil {
						errs <- err
						return
					}
					if ok {
						mu.Lock()
						finished[r.ID]++
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, r := range dead {
		r.Status = "failed"
		var ok bool
		update(t, b.Jobs, func(tx jobs.Tx) (err error) { ok, err = tx.Finish(r); return err })
		if ok {
			t.Fatalf("the dead node finished %s after losing its lease", r.ID)
		}
	}
	for i := range n {
		id := fmt.Sprintf("j%03d", i)
		if finished[id] != 1 {
			t.Errorf("%s finished %d times", id, finished[id])
		}
	}
	un, err := b.Jobs.Unfinished(ctx(t))
	must(t, err)
	if len(un) != 0 {
		t.Fatalf("%d jobs lost (never finished)", len(un))
	}
}

func sameLease(a, b jobs.Lease) bool {
	return a.Owner == b.Owner && a.Token == b.Token && a.Until.Equal(b.Until)
}
