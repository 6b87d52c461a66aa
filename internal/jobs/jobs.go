// Package jobs is Ember's durable job engine: predictions submitted
// asynchronously are committed to the store before the submit returns, are
// dispatched through the same activator queue as synchronous requests (so
// they count as demand and scale functions from zero), are retried with
// backoff, cancelled, streamed, and announced by signed webhooks from a
// persistent outbox. After a crash, unfinished jobs are recovered and each
// reaches a terminal state exactly once in the record.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// Errors returned by the Service. The predictions API maps them to statuses.
var (
	// ErrUnknownFunction: the job names no deployed function (404).
	ErrUnknownFunction = errkind.New(errkind.NotFound, "unknown_function", "unknown function")
	// ErrNotFound: no such prediction (404).
	ErrNotFound = errkind.New(errkind.NotFound, "not_found", "prediction not found")
	// ErrExpired: the prediction existed but retention removed it (410).
	ErrExpired = errkind.New(errkind.Gone, "expired", "prediction expired")
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errkind.New(errkind.Invalid, "bad_request", "invalid prediction request")
	// ErrClosed: the service is shutting down (503).
	ErrClosed = &errkind.Error{Kind: errkind.Unavailable, Code: "shutting_down", Msg: "job service is shutting down", RetryAfter: 5 * time.Second}
	// ErrQueueFull is what an Invoker should wrap when the activator's queue
	// is full: the job stays queued and is retried without spending an
	// attempt.
	ErrQueueFull = errors.New("queue full")
)

// ExpiredError says when a prediction's data was removed.
type ExpiredError struct {
	ID        string
	ExpiredAt time.Time
	Retention time.Duration
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("prediction %s expired at %s: results are kept for %s after completion",
		e.ID, e.ExpiredAt.UTC().Format(time.RFC3339), e.Retention)
}

func (e *ExpiredError) Unwrap() error { return ErrExpired }

// Invoker sends r to an instance of fn through the activator (queueing and
// scaling from zero like sync calls). r's URL carries only the path
// (the function's predict_path); the Invoker sets scheme and host of the
// instance it picks. onAcquire is called when a slot is acquired
// (coldStart tells whether this request waited for a new instance); handle
// runs while the slot is held and reads the response. Errors before a
// response was received are returned (the activator's errors, e.g. queue
// full (wrap ErrQueueFull), start failed, ctx done); handle's error is
// returned as is.
type Invoker interface {
	Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(coldStart bool), handle func(*http.Response) error) error
}

// Functions looks up a deployed function's spec (retries, timeout,
// predict_path). It returns an error wrapping ErrUnknownFunction when the
// function is absent.
type Functions interface {
	Function(ctx context.Context, name string) (*spec.Function, error)
}

// Record is a job as the store keeps it. Zero times mean "not yet".
type Record struct {
	ID       string
	Function string
	Version  string
	Status   string
	Input    json.RawMessage
	// Output is the JSON output; nil until the job succeeds.
	Output json.RawMessage
	Error  string
	Logs   string
	// Attempts counts attempts started (slot acquired or start failed);
	// it is persisted before the attempt's outcome so a crash spends it.
	Attempts    int
	ColdStart   bool
	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	// PredictTime is the last attempt's time on the instance.
	PredictTime time.Duration
	// Deadline is Cancel-After's absolute deadline.
	Deadline       time.Time
	Webhook        string
	WebhookEvents  []string
	IdempotencyKey string
	// Owner is the id of the API key that created the job ("" when auth
	// was off or the job predates owners: only admins see it then).
	Owner string
	// Events is the JSON array of stream events, persisted at completion so
	// late subscribers can replay them.
	Events      json.RawMessage
	DataRemoved bool
	// Omitted names the fields a list left out for their size (input,
	// output, logs), with their size in bytes.
	Omitted map[string]int64
	// Lease is the worker's hold on the job while it is not terminal.
	// Progress and Finish change the record only while the lease they
	// carry (owner and token) is the current one.
	Lease Lease
	// CancelRequested: a cancel was asked for on a node that does not hold
	// the job; the holder cancels it at its next heartbeat.
	CancelRequested bool
}

// Lease is a worker's hold on a job: only the holder runs it, and its
// writes count only while it holds the lease. A worker extends its leases
// by heartbeats; one that stops (crash, partition) loses them at Until and
// another worker claims the jobs. Token is a fencing token raised at every
// claim, so a worker whose lease was taken over cannot complete the job.
type Lease struct {
	Owner string
	Token int64
	Until time.Time
}

// LeaseState is one lease a heartbeat renewed.
type LeaseState struct {
	ID              string
	Token           int64
	CancelRequested bool
}

// Webhook is one outbox entry: a signed POST still to deliver.
type Webhook struct {
	ID        int64
	JobID     string
	Event     string
	URL       string
	Body      []byte
	Attempts  int
	NextAt    time.Time
	CreatedAt time.Time
}

// DeliveriesKept bounds the settled (delivered or abandoned) webhooks kept
// per job for its detail page: settling one prunes the older ones beyond
// it. Pending ones are never pruned; all go with the job's record.
const DeliveriesKept = 20

// Attempt is what one webhook delivery attempt came to.
type Attempt struct {
	At time.Time
	// StatusCode is the receiver's HTTP status (0: no answer).
	StatusCode int
	// Error is why the attempt failed ("" when it succeeded).
	Error string
}

// Delivery is one outbox entry as a job's detail shows it: pending, or
// settled with its outcome (api.DeliveryDelivered, api.DeliveryAbandoned).
type Delivery struct {
	ID         int64
	Event      string
	URL        string
	Outcome    string
	Attempts   int
	StatusCode int
	LastError  string
	// LastAttemptAt is zero before the first attempt.
	LastAttemptAt time.Time
	NextAt        time.Time
	CreatedAt     time.Time
}

// ListQuery selects a page of jobs, newest first.
type ListQuery struct {
	// Before is an exclusive cursor: only jobs with a smaller ID (IDs sort
	// by creation time).
	Before string
	// Function filters by function when set.
	Function string
	// Owner filters by creator key id when set.
	Owner string
	Limit int
	// MaxField, when > 0, leaves out (and does not read) input, output
	// and logs larger than this many bytes, naming them in
	// Record.Omitted; events are not read at all.
	MaxField int64
}

// Store persists jobs and the webhook outbox. All writes go through Update
// so that one goroutine can group many writes into one transaction.
type Store interface {
	// Update runs fn in one write transaction and commits it when fn
	// returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// Get returns a job or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	List(ctx context.Context, q ListQuery) ([]*Record, error)
	// DueWebhooks returns, for up to limit jobs, the oldest undelivered
	// webhook if it is due at now (so deliveries per job stay in order).
	DueWebhooks(ctx context.Context, now time.Time, limit int) ([]*Webhook, error)
	// Deliveries returns a job's webhooks, pending and settled, oldest
	// first: its newest limit.
	Deliveries(ctx context.Context, jobID string, limit int) ([]*Delivery, error)
	// WebhookSecret returns the stored signing secret, storing
	// generate's result first if there is none.
	WebhookSecret(ctx context.Context, generate func() (string, error)) (string, error)
}

// Tx is the write side of one store transaction.
type Tx interface {
	// Insert adds a job, leased to r.Lease (the submitting worker runs
	// it). When r.IdempotencyKey names a job created at or after keySince,
	// nothing is inserted and that job's ID is returned.
	Insert(r *Record, keySince time.Time) (existingID string, err error)
	// Claim leases to owner, until until, up to limit jobs that are not
	// terminal and not leased (no owner, or another owner's lease that
	// ended at or before now; owner's own leases are renewed, not
	// claimed), oldest first, raising each one's lease token; it returns
	// them with their new Lease. A store with row locks implements it as
	// one UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)
	// RETURNING …, so concurrent claimers never block on or share a job.
	Claim(owner string, now, until time.Time, limit int) ([]*Record, error)
	// Renew extends to until every lease owner holds on a job that is not
	// terminal (the heartbeat) and returns those leases: a job the worker
	// runs but that is missing is one whose lease another worker took.
	Renew(owner string, until time.Time) ([]LeaseState, error)
	// Release ends owner's leases on jobs not terminal, so any worker may
	// claim them at once (at shutdown, and at start-up for the leases a
	// crashed run of the same worker left).
	Release(owner string) error
	// RequestCancel marks a job that is not terminal for cancelling by its
	// holder; false when it is terminal or absent.
	RequestCancel(id string) (bool, error)
	// Progress writes status, attempts, started_at, cold_start and logs of a
	// job that is not terminal and whose lease is r.Lease; false otherwise.
	Progress(r *Record) (bool, error)
	// Finish records r's terminal state (status, output, error, logs,
	// completed_at, predict time, events) only if the job is not terminal
	// yet and r.Lease (owner and token) is its current lease: a job is
	// completed at most once, and only by its holder. False otherwise.
	Finish(r *Record) (bool, error)
	AddWebhook(w *Webhook) error
	// WebhookDone settles a webhook with outcome (api.DeliveryDelivered
	// or api.DeliveryAbandoned) after attempts, the last one a: it leaves
	// the outbox (DueWebhooks) but stays, without its body, for
	// Deliveries, the job's settled entries pruned to DeliveriesKept.
	WebhookDone(id int64, attempts int, outcome string, a Attempt) error
	// WebhookRetry records a failed attempt a and when to try next.
	WebhookRetry(id int64, attempts int, next time.Time, a Attempt) error
	// Sweep removes input, output, logs and events of jobs completed before
	// purgeBefore, deletes the remaining records (and settled webhooks) of
	// jobs completed before deleteBefore and idempotency keys created
	// before keysBefore.
	Sweep(purgeBefore, deleteBefore, keysBefore time.Time) (purged int, err error)
}

// SubmitRequest is one prediction to create.
type SubmitRequest struct {
	// Function is the function name (the API's model or version).
	Function string
	Version  string
	Input    json.RawMessage
	Webhook  string
	// WebhookEvents filters webhook events (start, output, logs,
	// completed); empty means all.
	WebhookEvents []string
	// CancelAfter, when positive, aborts the job if it has not started by
	// then and cancels it if it is still running.
	CancelAfter time.Duration
	// IdempotencyKey returns the original prediction for a repeated key
	// within 24 hours.
	IdempotencyKey string
	// Owner is the caller's API key id, stored with the job (see
	// Service.Owner). It also scopes IdempotencyKey: the same key sent by
	// two owners names two jobs, so one caller can neither reach nor block
	// another's job by guessing its key.
	Owner string
}

// ListOptions selects a page of predictions.
type ListOptions struct {
	Cursor   string
	Function string
	// Owner, when set, lists only the jobs this key id created.
	Owner string
	// Limit defaults to 100, at most 1000.
	Limit int
}

// Event is one stream event: output (a chunk), logs (a line of text),
// error (the failure message) or done (data {} or {"reason": ...}).
type Event struct {
	ID   int64           `json:"id"`
	Type string          `json:"event"`
	Data json.RawMessage `json:"data"`
}

// Options configure the Service. Zero values take the defaults noted.
type Options struct {
	// BaseURL prefixes the urls of a prediction, e.g.
	// "http://127.0.0.1:8080" (default "").
	BaseURL string
	// Retention keeps terminal predictions this long (default 7 days).
	Retention time.Duration
	// MaxInFlight bounds jobs dispatched at once across functions
	// (default 2048). Per function the bound is
	// max(1,scaling.max)*max(1,scaling.concurrency) + scaling.queue/2, which
	// leaves half the activator queue to synchronous requests.
	MaxInFlight int
	// RetryBackoff is the first retry delay, doubled per attempt up to
	// MaxRetryBackoff (defaults 1s and 1m).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// DrainTimeout is how long Run waits for running jobs at shutdown before
	// cancelling them; cancelled ones are retried at the next start without
	// spending an attempt (default 10s).
	DrainTimeout time.Duration
	// WebhookClient sends webhooks (default: a client with WebhookTimeout).
	WebhookClient *http.Client
	// WebhookTimeout bounds one delivery (default 10s).
	WebhookTimeout time.Duration
	// CheckWebhookAddr, if set, refuses webhook URLs whose host is a
	// literal IP it rejects, at submit (400). Hostnames are for the
	// WebhookClient's dialer to check when it connects.
	CheckWebhookAddr func(netip.Addr) error
	// WebhookWorkers bounds concurrent deliveries (default 16).
	WebhookWorkers int
	// WebhookBackoff is the first redelivery delay, doubled up to
	// MaxWebhookBackoff (defaults 1s and 10m); a webhook is abandoned after
	// WebhookMaxAttempts (default 20, about 2.5 h of retrying).
	WebhookBackoff     time.Duration
	MaxWebhookBackoff  time.Duration
	WebhookMaxAttempts int
	// WebhookThrottle spaces output and logs webhooks of one job
	// (default 500ms).
	WebhookThrottle time.Duration
	// SweepInterval is how often retention runs (default 1m).
	SweepInterval time.Duration
	// MaxOutputBytes bounds one job's output (default 32 MiB).
	MaxOutputBytes int64
	// StreamToken, if set, returns a capability token for a prediction's
	// stream; urls.stream then carries it as ?token=, so the stream URL
	// works without an API key (as Replicate's do). Called at each
	// rendering of a prediction.
	StreamToken func(id string) string
	// ListFieldBytes: in a list, an input, output or logs larger than
	// this is left out and named in "omitted" (default 64 KiB); GET by id
	// returns it whole.
	ListFieldBytes int64
	// ListPageBytes ends a page of a list early, its cursor continuing
	// from there, once its predictions hold this many bytes (default
	// 4 MiB).
	ListPageBytes int64
	// WorkerID names this worker's leases (default: the host name). It
	// must differ between workers sharing a store and stay the same
	// across restarts of one, so a restarted worker takes back at once
	// the jobs its crashed run held instead of waiting for their leases
	// to end.
	WorkerID string
	// LeaseDuration is how long a claimed job stays leased without a
	// heartbeat (default 30s): a worker that dies holds its jobs this
	// long before another one retries them.
	LeaseDuration time.Duration
	// HeartbeatInterval is how often leases are renewed and cancel
	// requests from other nodes read (default LeaseDuration/3).
	HeartbeatInterval time.Duration
	// ClaimInterval is how often the worker looks for jobs no worker
	// holds (default 1s).
	ClaimInterval time.Duration
	// PollInterval is how often Wait, Cancel and streams read the record
	// of a job another worker holds (default 250ms).
	PollInterval time.Duration
	// Clock is the time source (default RealClock()).
	Clock Clock
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Retention, 7*24*time.Hour)
	def(&o.RetryBackoff, time.Second)
	def(&o.MaxRetryBackoff, time.Minute)
	def(&o.DrainTimeout, 10*time.Second)
	def(&o.WebhookTimeout, 10*time.Second)
	def(&o.WebhookBackoff, time.Second)
	def(&o.MaxWebhookBackoff, 10*time.Minute)
	def(&o.WebhookThrottle, 500*time.Millisecond)
	def(&o.SweepInterval, time.Minute)
	def(&o.LeaseDuration, 30*time.Second)
	def(&o.HeartbeatInterval, o.LeaseDuration/3)
	def(&o.ClaimInterval, time.Second)
	def(&o.PollInterval, 250*time.Millisecond)
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.WorkerID == "" {
		o.WorkerID, _ = os.Hostname()
		if o.WorkerID == "" {
			o.WorkerID = "ember"
		}
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 2048
	}
	if o.WebhookWorkers <= 0 {
		o.WebhookWorkers = 16
	}
	if o.WebhookMaxAttempts <= 0 {
		o.WebhookMaxAttempts = 20
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = 32 << 20
	}
	if o.ListFieldBytes <= 0 {
		o.ListFieldBytes = 64 << 10
	}
	if o.ListPageBytes <= 0 {
		o.ListPageBytes = 4 << 20
	}
	if o.WebhookClient == nil {
		o.WebhookClient = &http.Client{Timeout: o.WebhookTimeout}
	}
	return o
}

// backoff returns base·2^(n-1) capped at max, for n ≥ 1.
// E.g. base=1s, max=1m: 1s, 2s, 4s, … 32s, 1m, 1m.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
