// Package replicate serves Ember's job system through a Replicate-compatible
// predictions API, so existing Replicate clients work with only the base URL
// changed. The gateway mounts it.
package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/problem"
)

// Jobs is the job service as these handlers use it (*jobs.Service).
type Jobs interface {
	SubmitBatch(ctx context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error)
	Get(ctx context.Context, id string) (*api.Prediction, error)
	List(ctx context.Context, o jobs.ListOptions) (*jobs.Page, error)
	Cancel(ctx context.Context, id string) (*api.Prediction, error)
	Wait(ctx context.Context, id string, d time.Duration) (*api.Prediction, error)
	Subscribe(ctx context.Context, id string, lastEventID int64) (*jobs.Stream, error)
	WebhookSecret(ctx context.Context) (string, error)
}

var _ Jobs = (*jobs.Service)(nil)

const (
	// defaultWait is Prefer: wait without a number.
	defaultWait = 60 * time.Second
	// maxWait bounds Prefer: wait=N.
	maxWait = 10 * time.Minute
	// maxRequestBytes bounds a submit body (inputs included).
	maxRequestBytes = 64 << 20
	// maxBatch bounds the inputs of one batch.
	maxBatch = 1000
)

// Handler serves the predictions API.
type Handler struct {
	jobs      Jobs
	log       *slog.Logger
	mux       *http.ServeMux
	keepAlive time.Duration
	tokens    StreamTokenVerifier // nil: streams need a key
}

// DefaultKeepAlive is how often a quiet prediction stream sends an SSE
// comment, so proxies and load balancers do not close it as idle while a
// long job runs.
const DefaultKeepAlive = 15 * time.Second

// New returns the handler; logger may be nil.
func New(j Jobs, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{jobs: j, log: logger, mux: http.NewServeMux(), keepAlive: DefaultKeepAlive}
	h.Mount(muxRegistrar{h.mux})
	return h
}

// StreamTokenVerifier checks a stream URL's token for one prediction
// (*auth.StreamTokens).
type StreamTokenVerifier interface {
	VerifyStreamToken(id, token string, now time.Time) error
}

// SetStreamTokens makes the stream route accept a request without a key
// that carries a valid token for its prediction; call before serving.
func (h *Handler) SetStreamTokens(v StreamTokenVerifier) { h.tokens = v }

// SetKeepAlive sets the stream keep-alive interval; call before serving.
func (h *Handler) SetKeepAlive(d time.Duration) { h.keepAlive = d }

// ServeHTTP serves the routes (without right checks: for tests and servers
// without authentication; a server mounts them with Mount).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Registrar mounts a route behind the check of its right (the gateway).
type Registrar interface {
	Register(pattern string, right auth.Right, h http.Handler)
}

type route struct {
	pattern string
	right   auth.Right
	serve   func(http.ResponseWriter, *http.Request) error
}

// routes are the predictions API with each route's right. Invoke routes
// check the function and the prediction's owner in the Jobs that Authorize
// returns.
func (h *Handler) routes() []route {
	return []route{
		{"POST /v1/predictions", auth.RightInvoke, h.create},
		{"GET /v1/predictions", auth.RightInvoke, h.list},
		{"GET /v1/predictions/{id}", auth.RightInvoke, h.get},
		{"POST /v1/predictions/{id}/cancel", auth.RightInvoke, h.cancel},
		// A key that sees the prediction, or the signed token of its
		// stream URL (checked in stream): Replicate's clients fetch
		// urls.stream without a key.
		{"GET /v1/predictions/{id}/stream", auth.RightCapability, h.stream},
		{"POST /v1/models/{owner}/{name}/predictions", auth.RightInvoke, h.create},
		{"POST /v1/deployments/{owner}/{name}/predictions", auth.RightInvoke, h.create},
		{"POST /v1/functions/{name}/batch", auth.RightInvoke, h.batch},
		{"GET /v1/webhooks/default/secret", auth.RightAdmin, h.secret},
	}
}

// Mount registers every route on reg with its right.
func (h *Handler) Mount(reg Registrar) {
	for _, rt := range h.routes() {
		f := rt.serve
		reg.Register(rt.pattern, rt.right, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				h.writeError(w, r, err)
			}
		}))
	}
}

// muxRegistrar mounts on a plain mux (the Handler's own), rights unchecked.
type muxRegistrar struct{ *http.ServeMux }

func (m muxRegistrar) Register(pattern string, _ auth.Right, h http.Handler) { m.Handle(pattern, h) }

func badRequest(format string, args ...any) error {
	return errkind.New(errkind.Invalid, "bad_request", fmt.Sprintf(format, args...))
}

// writeError answers err in Replicate's shape. Errors with a kind (jobs'
// sentinels, auth failures) say what they are; a body over its limit
// says so in Replicate's words; a client that went away gets nothing;
// anything else is a 500 that names the cause.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var k errkind.Kinded
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &k):
	case errors.As(err, &mbe):
		err = errkind.New(errkind.TooLarge, "body_too_large", fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away
	default:
		h.log.Error("predictions API", "method", r.Method, "path", r.URL.Path, "err", err)
		err = errkind.New(errkind.Internal, "internal", "internal error: "+err.Error())
	}
	problem.WriteReplicate(w, problem.Classify(err, time.Now()))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func decode(r *http.Request, v any) error {
	body := http.MaxBytesReader(nil, r.Body, maxRequestBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

// create serves POST /v1/predictions and the model/deployment variants.
func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var req api.PredictionRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	fn := req.Model
	if owner := r.PathValue("owner"); owner != "" {
		fn = owner + "/" + r.PathValue("name")
	}
	if fn == "" {
		fn = req.Version
	}
	if fn == "" {
		return badRequest(`"model" (or "version") names the function to run`)
	}
	sr, err := submitRequest(r, fn, req.Input, req.Webhook, req.WebhookEventsFilter)
	if err != nil {
		return err
	}
	sr.Version = req.Version
	wait, err := preferWait(r)
	if err != nil {
		return err
	}
	ps, err := h.jobs.SubmitBatch(r.Context(), []jobs.SubmitRequest{sr})
	if err != nil {
		return err
	}
	p := ps[0]
	if wait > 0 {
		if p, err = h.jobs.Wait(r.Context(), p.ID, wait); err != nil {
			return err
		}
	}
	w.Header().Set("Location", p.URLs.Get)
	writeJSON(w, http.StatusCreated, p)
	return nil
}

// batch serves POST /v1/functions/{name}/batch: one prediction per input,
// committed together.
func (h *Handler) batch(w http.ResponseWriter, r *http.Request) error {
	var req api.BatchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Inputs) == 0 || len(req.Inputs) > maxBatch {
		return badRequest(`"inputs" must hold 1 to %d inputs (got %d)`, maxBatch, len(req.Inputs))
	}
	key := r.Header.Get(api.HeaderIdempotencyKey)
	reqs := make([]jobs.SubmitRequest, len(req.Inputs))
	for i, in := range req.Inputs {
		sr, err := submitRequest(r, r.PathValue("name"), in, req.Webhook, req.WebhookEventsFilter)
		if err != nil {
			return err
		}
		if key != "" { // one key per input, derived from the batch's key
			sr.IdempotencyKey = key + "#" + strconv.Itoa(i)
		}
		reqs[i] = sr
	}
	ps, err := h.jobs.SubmitBatch(r.Context(), reqs)
	if err != nil {
		return err
	}
	out := api.BatchResponse{Predictions: make([]api.Prediction, len(ps))}
	for i, p := range ps {
		out.Predictions[i] = *p
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func submitRequest(r *http.Request, fn string, input json.RawMessage, webhook string, filter []string) (jobs.SubmitRequest, error) {
	sr := jobs.SubmitRequest{
		Function:       fn,
		Input:          input,
		Webhook:        webhook,
		WebhookEvents:  filter,
		IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey),
	}
	if v := r.Header.Get(api.HeaderCancelAfter); v != "" {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			return sr, badRequest("Cancel-After: want a positive duration such as 30s, 5m or a number of seconds (got %q)", v)
		}
		sr.CancelAfter = d
	}
	return sr, nil
}

func parseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}

// preferWait reads "Prefer: wait" (60 s) or "Prefer: wait=N" (N seconds).
func preferWait(r *http.Request) (time.Duration, error) {
	for _, v := range r.Header.Values(api.HeaderPrefer) {
		for _, pref := range strings.Split(v, ",") {
			name, val, hasVal := strings.Cut(strings.TrimSpace(pref), "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			if !hasVal {
				return defaultWait, nil
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 1 {
				return 0, badRequest("Prefer: wait=N wants N ≥ 1 seconds (got %q)", val)
			}
			return min(time.Duration(n)*time.Second, maxWait), nil
		}
	}
	return 0, nil
}

// get serves GET /v1/predictions/{id}; Prefer: wait holds it until the
// prediction is terminal (an Ember extension the CLI's get --wait uses).
func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	wait, err := preferWait(r)
	if err != nil {
		return err
	}
	var p *api.Prediction
	if wait > 0 {
		p, err = h.jobs.Wait(r.Context(), r.PathValue("id"), wait)
	} else {
		p, err = h.jobs.Get(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) error {
	p, err := h.jobs.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// list serves GET /v1/predictions?cursor=&limit=&model=, newest first.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := jobs.ListOptions{Cursor: q.Get("cursor"), Function: q.Get("model")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("limit: want a positive number (got %q)", v)
		}
		o.Limit = n
	}
	page, err := h.jobs.List(r.Context(), o)
	if err != nil {
		return err
	}
	out := api.PredictionList{Results: make([]api.Prediction, len(page.Predictions))}
	for i, p := range page.Predictions {
		out.Results[i] = *p
	}
	if page.Next != "" {
		next := *r.URL
		nq := next.Query()
		nq.Set("cursor", page.Next)
		next.RawQuery = nq.Encode()
		s := absolute(r, &next)
		out.Next = &s
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func absolute(r *http.Request, u *url.URL) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + u.RequestURI()
}

// stream serves Server-Sent Events of a prediction: output, logs, error
// and done events, replayed from the start or after Last-Event-ID.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	var last int64
	if v := r.Header.Get(api.HeaderLastEventID); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("Last-Event-ID: want an event id (got %q)", v)
		}
		last = n
	}
	ctx, id := r.Context(), r.PathValue("id")
	if tok := r.URL.Query().Get("token"); tok != "" && h.tokens != nil && auth.FromContext(ctx) == nil {
		// The one right a token grants: this prediction's stream.
		if err := h.tokens.VerifyStreamToken(id, tok, time.Now()); err != nil {
			return err
		}
		ctx = auth.WithStreamCapability(ctx, id)
	}
	st, err := h.jobs.Subscribe(ctx, id, last)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		ctx, cancel := context.WithTimeout(r.Context(), h.keepAlive)
		ev, err := st.Next(ctx)
		cancel()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			_ = rc.Flush()
			continue
		}
		if err != nil {
			return nil // the client went away
		}
		if _, err := io.WriteString(w, formatEvent(ev)); err != nil {
			return nil
		}
		_ = rc.Flush()
	}
}

// formatEvent writes one SSE event. Text (output chunks that are strings,
// logs, errors) is sent as is, one data line per line, as Replicate does;
// other values as JSON.
func formatEvent(ev jobs.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %d\nevent: %s\n", ev.ID, ev.Type)
	data := string(ev.Data)
	var s string
	if len(ev.Data) > 0 && ev.Data[0] == '"' && json.Unmarshal(ev.Data, &s) == nil {
		data = s
	}
	for _, line := range strings.Split(data, "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// secret serves GET /v1/webhooks/default/secret (as Replicate does).
func (h *Handler) secret(w http.ResponseWriter, r *http.Request) error {
	s, err := h.jobs.WebhookSecret(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.WebhookSecret{Key: s})
	return nil
}
