package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/spec"
)

// idempotencyWindow is how long an Idempotency-Key returns the original.
const idempotencyWindow = 24 * time.Hour

// tombstoneKeep is how long a purged record still answers 410 rather than
// 404.
const tombstoneKeep = 30 * 24 * time.Hour

// Cancellation causes of a job's context.
var (
	errUserCancel = errors.New("canceled by request")
	errDeadline   = errors.New("Cancel-After deadline passed")
	errShutdown   = errors.New("server shutting down")
	errLeaseLost  = errors.New("lease taken over by another worker")
)

// maxClaim bounds the jobs one claim takes.
const maxClaim = 1024

// Service runs jobs. Build it with New, start it with Run; Submit and the
// other methods are safe for concurrent use once Run has started.
type Service struct {
	store Store
	inv   Invoker
	fns   Functions
	opts  Options
	clock Clock
	log   *slog.Logger
	ids   idGen

	writes     chan *writeOp
	writerDone chan struct{} // closed when the writer has returned
	stopping   chan struct{} // closed when shutdown begins
	hookPoke   chan struct{} // wakes the webhook deliverer
	claimPoke  chan struct{} // asks for a claim before the next ClaimInterval

	// runCtx parents every job's context; shutdown cancels it.
	runCtx    context.Context
	runCancel context.CancelCauseFunc
	runners   sync.WaitGroup

	mu       sync.Mutex // guards the following
	live     map[string]*job
	queues   map[string]*fnQueue
	inFlight int  // dispatched jobs across functions
	closing  bool // no new runners

	secretMu sync.Mutex // guards secret
	secret   string
}

// fnQueue holds a function's jobs waiting for a dispatch slot.
type fnQueue struct {
	limit    int
	inFlight int
	pending  []*job
}

// New builds a Service. logger may be nil.
func New(store Store, inv Invoker, fns Functions, opts Options, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store:      store,
		inv:        inv,
		fns:        fns,
		opts:       opts.withDefaults(),
		log:        logger,
		writes:     make(chan *writeOp),
		writerDone: make(chan struct{}),
		stopping:   make(chan struct{}),
		hookPoke:   make(chan struct{}, 1),
		claimPoke:  make(chan struct{}, 1),
		live:       make(map[string]*job),
		queues:     make(map[string]*fnQueue),
	}
	s.clock = s.opts.Clock
	s.runCtx, s.runCancel = context.WithCancelCause(context.Background())
	return s
}

// Run frees the leases a crashed run of this worker left, then runs the
// writer, the dispatcher, the lease loop (claims of jobs no worker holds,
// among them those unfinished at start-up, and heartbeats), the webhook
// deliverer and retention until ctx is done. It then stops accepting jobs,
// waits up to DrainTimeout for running ones, cancels the rest, gives their
// leases back (they resume on the next worker to claim them, or at the next
// start), flushes pending writes and returns. Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	// This worker is starting, so no run of it holds a job any more: its
	// jobs are claimable at once, not only when their leases end.
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error { return tx.Release(s.opts.WorkerID) })
	if err != nil {
		return fmt.Errorf("jobs: release the leases of a previous run: %w", err)
	}
	quit := make(chan struct{})
	go s.runWriter(quit)

	var bg sync.WaitGroup
	bgCtx, bgCancel := context.WithCancel(context.Background())
	bg.Go(func() { s.deliverWebhooks(bgCtx) })
	bg.Go(func() { s.sweepLoop(bgCtx) })
	// Heartbeats go on while running jobs drain, so their leases hold.
	leaseCtx, leaseCancel := context.WithCancel(context.Background())
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); s.leaseLoop(leaseCtx) }()

	<-ctx.Done()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.stopping)
	bgCancel()
	bg.Wait()

	drained := make(chan struct{})
	go func() { s.runners.Wait(); close(drained) }()
	drainTimer := s.clock.NewTimer(s.opts.DrainTimeout)
	select {
	case <-drained:
		drainTimer.Stop()
	case <-drainTimer.C():
		s.log.Warn("jobs: drain timeout, cancelling running jobs; they resume at the next start")
		s.runCancel(errShutdown)
		<-drained
	}
	leaseCancel()
	<-leaseDone
	s.runCancel(errShutdown) // stops deadline timers' effects and backoff waits
	s.mu.Lock()
	for _, j := range s.live {
		j.stopTimers()
	}
	s.mu.Unlock()
	// The jobs left are given back, for another worker to claim now.
	if err := s.write(context.Background(), func(tx Tx) error { return tx.Release(s.opts.WorkerID) }); err != nil {
		s.log.Error("jobs: release leases at shutdown; they end by themselves", "err", err, "lease", s.opts.LeaseDuration)
	}
	close(quit)
	<-s.writerDone
	return nil
}

// recover queues a job this worker claimed: one left unfinished by a
// previous run, or by a worker that stopped.
func (s *Service) recover(r *Record) {
	j := s.newJob(r)
	s.mu.Lock()
	s.live[r.ID] = j
	s.mu.Unlock()
	fn, err := s.fns.Function(s.runCtx, r.Function)
	switch {
	case r.CancelRequested:
		j.state = stateFinishing
		s.runners.Go(func() { s.finishAlone(j, api.PredictionCanceled, nil, errUserCancel.Error()) })
		return
	case err != nil:
		j.state = stateFinishing
		s.runners.Go(func() { s.finishAlone(j, api.PredictionFailed, nil, fmt.Sprintf("function %q: %v", r.Function, err)) })
		return
	case r.Status == api.PredictionProcessing && r.Attempts > fn.Retries:
		// The interrupted attempt was the last one allowed: resending a
		// non-idempotent request is what retries: 0 forbids.
		j.state = stateFinishing
		msg := fmt.Sprintf("interrupted by a server restart during attempt %d of %d (retries: %d)", r.Attempts, fn.Retries+1, fn.Retries)
		s.runners.Go(func() { s.finishAlone(j, api.PredictionFailed, nil, msg) })
		return
	}
	s.armDeadline(j)
	s.enqueue(j, fn)
}

// finishAlone records a terminal state for a job no runner owns.
func (s *Service) finishAlone(j *job, status string, output json.RawMessage, msg string) {
	if _, err := s.finish(j, status, output, msg); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Error("jobs: finish", "id", j.id, "err", err)
	}
}

// Submit creates one prediction and returns it once committed.
func (s *Service) Submit(ctx context.Context, req SubmitRequest) (*api.Prediction, error) {
	ps, err := s.SubmitBatch(ctx, []SubmitRequest{req})
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// SubmitBatch creates predictions in one transaction: all or none are
// committed. The result is in request order.
func (s *Service) SubmitBatch(ctx context.Context, reqs []SubmitRequest) ([]*api.Prediction, error) {
	if len(reqs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrInvalid)
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return nil, ErrClosed
	}
	now := s.clock.Now()
	recs := make([]*Record, len(reqs))
	fns := make([]*spec.Function, len(reqs))
	for i, req := range reqs {
		fn, err := s.fns.Function(ctx, req.Function)
		if err != nil {
			return nil, err
		}
		r, err := s.newRecord(req, now)
		if err != nil {
			return nil, err
		}
		recs[i], fns[i] = r, fn
	}
	existing := make([]string, len(recs))
	err := s.write(ctx, func(tx Tx) error {
		for i, r := range recs {
			id, err := tx.Insert(r, now.Add(-idempotencyWindow))
			if err != nil {
				return fmt.Errorf("insert job: %w", err)
			}
			existing[i] = id
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*api.Prediction, len(recs))
	for i, r := range recs {
		if existing[i] != "" {
			continue
		}
		j := s.newJob(r)
		s.mu.Lock()
		s.live[r.ID] = j
		s.mu.Unlock()
		out[i] = j.prediction(s)
		s.armDeadline(j)
		s.enqueue(j, fns[i])
	}
	for i := range recs {
		if existing[i] == "" {
			continue
		}
		p, err := s.Get(ctx, existing[i])
		if err != nil {
			return nil, fmt.Errorf("idempotency key %q: %w", recs[i].IdempotencyKey, err)
		}
		out[i] = p
	}
	return out, nil
}

func (s *Service) newRecord(req SubmitRequest, now time.Time) (*Record, error) {
	input := req.Input
	if len(strings.TrimSpace(string(input))) == 0 {
		input = json.RawMessage("{}")
	} else if !json.Valid(input) {
		return nil, fmt.Errorf("%w: input is not valid JSON", ErrInvalid)
	}
	if req.Webhook != "" {
		u, err := url.Parse(req.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: webhook must be an absolute http(s) URL (got %q)", ErrInvalid, req.Webhook)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && s.opts.CheckWebhookAddr != nil {
			if err := s.opts.CheckWebhookAddr(ip); err != nil {
				return nil, fmt.Errorf("%w: webhook: %w", ErrInvalid, err)
			}
		}
	}
	for _, e := range req.WebhookEvents {
		switch e {
		case api.WebhookStart, api.WebhookOutput, api.WebhookLogs, api.WebhookCompleted:
		default:
			return nil, fmt.Errorf("%w: webhook_events_filter: unknown event %q (want start, output, logs or completed)", ErrInvalid, e)
		}
	}
	if req.CancelAfter < 0 {
		return nil, fmt.Errorf("%w: Cancel-After must be positive (got %s)", ErrInvalid, req.CancelAfter)
	}
	if len(req.IdempotencyKey) > 255 {
		return nil, fmt.Errorf("%w: Idempotency-Key longer than 255 bytes", ErrInvalid)
	}
	r := &Record{
		ID:             s.ids.next(now),
		Function:       req.Function,
		Version:        req.Version,
		Status:         api.PredictionStarting,
		Input:          input,
		CreatedAt:      now,
		Webhook:        req.Webhook,
		WebhookEvents:  req.WebhookEvents,
		IdempotencyKey: req.IdempotencyKey,
		Owner:          req.Owner,
		// The submitting worker runs the job: no claim round trip.
		Lease: Lease{Owner: s.opts.WorkerID, Token: 1, Until: now.Add(s.opts.LeaseDuration)},
	}
	if req.IdempotencyKey != "" && req.Owner != "" {
		// The unit separator cannot appear in a header value's key.
		r.IdempotencyKey = req.Owner + "\x1f" + req.IdempotencyKey
	}
	if r.Version == "" {
		r.Version = r.Function
	}
	if req.CancelAfter > 0 {
		r.Deadline = now.Add(req.CancelAfter)
	}
	return r, nil
}

// Get returns a prediction: live state for a running job, else the record.
// A prediction removed by retention is an *ExpiredError (ErrExpired).
func (s *Service) Get(ctx context.Context, id string) (*api.Prediction, error) {
	var p *api.Prediction
	if j := s.liveJob(id); j != nil {
		j.mu.Lock()
		r := j.snapshotLocked()
		j.mu.Unlock()
		// A job that has just finished stays live until it leaves the
		// set, after its waiters were woken: the stored record's
		// retention rule applies to it too.
		if err := s.expired(&r, s.clock.Now()); err != nil {
			return nil, err
		}
		p = s.toPrediction(&r)
	} else {
		r, err := s.store.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := s.expired(r, s.clock.Now()); err != nil {
			return nil, err
		}
		p = s.toPrediction(r)
	}
	if p.Webhook == "" {
		return p, nil
	}
	ds, err := s.store.Deliveries(ctx, id, DeliveriesKept+maxPendingShown)
	if err != nil {
		return nil, fmt.Errorf("read webhook deliveries of %s: %w", id, err)
	}
	p.WebhookDeliveries = make([]api.WebhookDelivery, 0, len(ds))
	for _, d := range ds {
		p.WebhookDeliveries = append(p.WebhookDeliveries, d.wire())
	}
	return p, nil
}

// maxPendingShown bounds the pending deliveries Get shows beside the
// settled ones (a job streaming output can queue many).
const maxPendingShown = 20

func (d *Delivery) wire() api.WebhookDelivery {
	w := api.WebhookDelivery{Event: d.Event, URL: d.URL, Outcome: d.Outcome, Attempts: d.Attempts,
		StatusCode: d.StatusCode, Error: d.LastError, CreatedAt: d.CreatedAt.UTC()}
	if !d.LastAttemptAt.IsZero() {
		t := d.LastAttemptAt.UTC()
		w.LastAttemptAt = &t
	}
	if d.Outcome == api.DeliveryPending && !d.NextAt.IsZero() {
		t := d.NextAt.UTC()
		w.NextAttemptAt = &t
	}
	return w
}

// Owner returns the id of the API key that created prediction id ("" for
// none), or an error wrapping ErrNotFound. Every job is in the store from
// its submit on, so this needs no live state.
func (s *Service) Owner(ctx context.Context, id string) (string, error) {
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return "", err
	}
	return r.Owner, nil
}

func (s *Service) expired(r *Record, now time.Time) error {
	if r.DataRemoved || (!r.CompletedAt.IsZero() && now.Sub(r.CompletedAt) > s.opts.Retention) {
		return &ExpiredError{ID: r.ID, ExpiredAt: r.CompletedAt.Add(s.opts.Retention), Retention: s.opts.Retention}
	}
	return nil
}

// Page is one page of predictions, newest first.
type Page struct {
	Predictions []*api.Prediction
	// Next is the cursor of the following (older) page; "" on the last.
	Next string
}

// List returns predictions newest first.
func (s *Service) List(ctx context.Context, o ListOptions) (*Page, error) {
	limit := o.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	if o.Cursor != "" && !validID(o.Cursor) {
		return nil, fmt.Errorf("%w: invalid cursor %q", ErrInvalid, o.Cursor)
	}
	recs, err := s.store.List(ctx, ListQuery{Before: o.Cursor, Function: o.Function, Owner: o.Owner, Limit: limit + 1, MaxField: s.opts.ListFieldBytes})
	if err != nil {
		return nil, err
	}
	p := &Page{}
	if len(recs) > limit {
		recs = recs[:limit]
		p.Next = recs[limit-1].ID
	}
	// A page is bounded in bytes as well as in items: large fields are
	// left out (GET by id has them), and the page ends once it holds
	// ListPageBytes, its cursor continuing from the last one in it.
	now := s.clock.Now()
	var size int64
	for i, r := range recs {
		var pr *api.Prediction
		if j := s.liveJob(r.ID); j != nil {
			pr = j.prediction(s)
		} else {
			if s.expired(r, now) != nil {
				r.DataRemoved, r.Input, r.Output, r.Logs, r.Omitted = true, nil, nil, "", nil
			}
			pr = s.toPrediction(r)
		}
		n := summarise(pr, s.opts.ListFieldBytes)
		if i > 0 && size+n > s.opts.ListPageBytes {
			p.Next = recs[i-1].ID
			break
		}
		size += n
		p.Predictions = append(p.Predictions, pr)
	}
	return p, nil
}

// summarise leaves out p's fields larger than maxField bytes, naming them
// in p.Omitted, and returns about how many bytes p takes as JSON.
func summarise(p *api.Prediction, maxField int64) int64 {
	omit := func(field string, n int) bool {
		if int64(n) <= maxField {
			return false
		}
		if p.Omitted == nil {
			p.Omitted = map[string]int64{}
		}
		p.Omitted[field] = int64(n)
		return true
	}
	if omit("input", len(p.Input)) {
		p.Input = json.RawMessage("null")
	}
	if omit("output", len(p.Output)) {
		p.Output = json.RawMessage("null")
	}
	if omit("logs", len(p.Logs)) {
		p.Logs = ""
	}
	// Logs may double when escaped; the rest is ids, times and URLs.
	return int64(len(p.Input)+len(p.Output)+2*len(p.Logs)) + 1024
}

// Wait returns the prediction once it is terminal or d has passed, or ctx
// is done, whichever is first (Prefer: wait). A job this worker holds is
// waited for in memory; one held elsewhere (or by nobody) by reading its
// record every PollInterval.
func (s *Service) Wait(ctx context.Context, id string, d time.Duration) (*api.Prediction, error) {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	return s.waitTerminal(ctx, id, t.C())
}

// waitTerminal returns id's prediction once it is terminal, or as it is
// when timeout fires or ctx is done.
func (s *Service) waitTerminal(ctx context.Context, id string, timeout <-chan time.Time) (*api.Prediction, error) {
	for {
		if j := s.liveJob(id); j != nil {
			select {
			case <-j.done:
				if j.isLost() {
					continue // another worker runs it now: follow the record
				}
			case <-timeout:
			case <-ctx.Done():
			}
			return j.prediction(s), nil
		}
		p, err := s.Get(ctx, id)
		if err != nil || isTerminal(p.Status) {
			return p, err
		}
		poll := s.clock.NewTimer(s.opts.PollInterval)
		select {
		case <-poll.C():
			continue
		case <-timeout:
		case <-ctx.Done():
		}
		poll.Stop()
		return p, nil
	}
}

// Cancel cancels a prediction: a queued one is canceled at once, a running
// one has its instance request cancelled. It returns the prediction after
// the cancel took effect (or ctx ended). Canceling a terminal prediction
// returns it unchanged. A job another worker holds gets a cancel request
// in the store, which that worker acts on at its next heartbeat; Cancel
// waits for that up to LeaseDuration, then returns the job as it is.
func (s *Service) Cancel(ctx context.Context, id string) (*api.Prediction, error) {
	j := s.liveJob(id)
	if j == nil {
		var requested bool
		err := s.write(ctx, func(tx Tx) (err error) {
			requested, err = tx.RequestCancel(id)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("cancel %s: %w", id, err)
		}
		if !requested {
			return s.Get(ctx, id) // terminal, or absent
		}
		s.pokeClaim() // a job no worker holds is claimed and canceled here
		t := s.clock.NewTimer(s.opts.LeaseDuration)
		defer t.Stop()
		return s.waitTerminal(ctx, id, t.C())
	}
	s.cancelJob(j, errUserCancel)
	select {
	case <-j.done:
		if j.isLost() {
			return s.Cancel(ctx, id) // it moved to another worker meanwhile
		}
	case <-ctx.Done():
	}
	return j.prediction(s), nil
}

// cancelJob ends j for cause: a job with a runner gets its context
// cancelled, the runner records the end; a queued one is finished here.
func (s *Service) cancelJob(j *job, cause error) {
	j.mu.Lock()
	switch j.state {
	case stateRunning:
		j.mu.Unlock()
		j.cancel(cause)
		return
	case stateQueued:
		j.state = stateFinishing
		j.mu.Unlock()
		j.cancel(cause)
		status := api.PredictionCanceled
		if cause == errDeadline {
			status = api.PredictionAborted
		}
		s.finishAlone(j, status, nil, cause.Error())
	default:
		j.mu.Unlock()
	}
}

func (s *Service) armDeadline(j *job) {
	if j.deadline.IsZero() {
		return
	}
	j.mu.Lock()
	j.deadlineTimer = s.clock.AfterFunc(j.deadline.Sub(s.clock.Now()), func() { s.cancelJob(j, errDeadline) })
	j.mu.Unlock()
}

func (s *Service) liveJob(id string) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[id]
}

// toPrediction renders a record.
func (s *Service) toPrediction(rec *Record) *api.Prediction {
	// Durations come from wall-clock readings only, so a live job and its
	// stored record (which has no monotonic reading) render the same.
	r := *rec
	r.CreatedAt, r.StartedAt, r.CompletedAt = r.CreatedAt.Round(0), r.StartedAt.Round(0), r.CompletedAt.Round(0)
	base := strings.TrimRight(s.opts.BaseURL, "/") + "/v1/predictions/" + r.ID
	p := &api.Prediction{
		ID:          r.ID,
		Model:       r.Function,
		Version:     r.Version,
		Input:       r.Input,
		Output:      r.Output,
		Logs:        r.Logs,
		Status:      r.Status,
		CreatedAt:   r.CreatedAt.UTC(),
		Webhook:     r.Webhook,
		DataRemoved: r.DataRemoved,
		Omitted:     r.Omitted,
		Attempts:    r.Attempts,
		URLs:        api.PredictionURLs{Get: base, Cancel: base + "/cancel", Stream: base + "/stream"},
	}
	if s.opts.StreamToken != nil {
		p.URLs.Stream += "?token=" + url.QueryEscape(s.opts.StreamToken(r.ID))
	}
	if p.Input == nil {
		p.Input = json.RawMessage("null")
	}
	if p.Output == nil {
		p.Output = json.RawMessage("null")
	}
	if r.Webhook != "" {
		p.WebhookEventsFilter = r.WebhookEvents
		if len(p.WebhookEventsFilter) == 0 {
			p.WebhookEventsFilter = []string{api.WebhookStart, api.WebhookOutput, api.WebhookLogs, api.WebhookCompleted}
		}
	}
	if r.Error != "" {
		e := r.Error
		p.Error = &e
	}
	secs := func(d time.Duration) *float64 { v := d.Seconds(); return &v }
	if !r.StartedAt.IsZero() {
		t := r.StartedAt.UTC()
		p.StartedAt = &t
		p.Metrics.QueueTime = secs(r.StartedAt.Sub(r.CreatedAt))
	}
	if !r.CompletedAt.IsZero() {
		t := r.CompletedAt.UTC()
		p.CompletedAt = &t
		p.Metrics.TotalTime = secs(r.CompletedAt.Sub(r.CreatedAt))
		if !r.StartedAt.IsZero() {
			p.Metrics.PredictTime = secs(r.PredictTime)
		}
		exp := t.Add(s.opts.Retention)
		p.ExpiresAt = &exp
	}
	p.Metrics.ColdStart = r.ColdStart
	return p
}

// WebhookSecret returns the webhook signing secret ("whsec_…"), creating
// and storing it on first use.
func (s *Service) WebhookSecret(ctx context.Context) (string, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if s.secret != "" {
		return s.secret, nil
	}
	sec, err := s.store.WebhookSecret(ctx, newWebhookSecret)
	if err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	s.secret = sec
	return sec, nil
}

// sweepLoop applies retention every SweepInterval.
func (s *Service) sweepLoop(ctx context.Context) {
	for {
		now := s.clock.Now()
		var n int
		err := s.write(ctx, func(tx Tx) (err error) {
			n, err = tx.Sweep(now.Add(-s.opts.Retention), now.Add(-s.opts.Retention-tombstoneKeep), now.Add(-idempotencyWindow))
			return err
		})
		switch {
		case err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed):
			s.log.Error("jobs: retention sweep", "err", err)
		case n > 0:
			s.log.Info("jobs: retention removed prediction data", "count", n)
		}
		t := s.clock.NewTimer(s.opts.SweepInterval)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
