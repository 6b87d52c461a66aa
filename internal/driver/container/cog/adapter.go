package cog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on what the adapter reads.
const (
	// MaxInputBytes bounds an input body (the gateway's max_body_bytes
	// has already bounded it; this guards the adapter on its own).
	MaxInputBytes = 64 << 20
	// MaxResponseBytes bounds Cog's answer (output, logs and all).
	MaxResponseBytes = 64 << 20
)

// prediction is Cog's POST /predictions answer.
type prediction struct {
	Status  string          `json:"status"`
	Output  json.RawMessage `json:"output"`
	Error   json.RawMessage `json:"error"`
	Logs    string          `json:"logs"`
	Metrics json.RawMessage `json:"metrics"`
}

// Adapter serves Ember's side of one Cog instance on a loopback port of
// its own: Ember routes to Addr as to any HTTP instance, and the adapter
// speaks Cog's API to Upstream.
//
//   - POST /predictions: a Cog request ({"input": …}); the input is
//     validated and Cog's answer is returned as it is.
//   - POST on any other path: the body is the input; the answer is the
//     output (200, JSON), or Ember's error envelope: 422 naming the input
//     field, or 500 "prediction failed: <Cog's error>" (Cog's logs in
//     the logs member). With Accept: text/event-stream (and not JSON) a
//     list output (Cog's iterators) is sent as one SSE output event per
//     item, its logs as a logs event, then done.
//   - File outputs (data URLs, as Cog returns files without an upload
//     URL) become links to Files, served by Ember's GET /v1/files/{id}.
//   - GET /openapi.json and other GETs are passed to Cog.
type Adapter struct {
	upstream string // host:port of the Cog server
	files    *Files // nil: file outputs stay inline
	// callbacks, when set (ListenCallbacks), runs jobs and streaming calls
	// through Cog's async API.
	callbacks *callbacks
	logger    *slog.Logger
	client    *http.Client
	ln        net.Listener
	srv       *http.Server
	schema    atomic.Pointer[Schema]

	startOnce sync.Once
	served    chan struct{} // closed when Serve returns (if started)
	started   atomic.Bool
}

// Listen opens the adapter's loopback port for the Cog server at
// upstream. Start serves it; Close ends it. File outputs (data URLs) are
// stored in files and replaced by their links; files may be nil.
func Listen(upstream string, files *Files, logger *slog.Logger) (*Adapter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cog adapter: %w", err)
	}
	a := &Adapter{upstream: upstream, files: files, logger: logger, ln: ln, served: make(chan struct{}),
		client: &http.Client{
			Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Addr is where Ember sends the instance's requests.
func (a *Adapter) Addr() string { return a.ln.Addr().String() }

// Start serves requests until Close.
func (a *Adapter) Start() {
	a.startOnce.Do(func() {
		a.started.Store(true)
		go func() {
			defer close(a.served)
			if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.logger.Warn("cog adapter stopped", "err", err)
			}
		}()
	})
}

// Close stops serving (in-flight requests are cut: the container behind
// them is gone) and waits for the server goroutine.
func (a *Adapter) Close() {
	a.srv.Close()
	a.ln.Close()
	if a.callbacks != nil {
		a.callbacks.close()
	}
	if a.started.Load() {
		<-a.served
	}
	a.client.CloseIdleConnections()
}

// LoadSchema fetches the model's Input schema; until it succeeds inputs
// are passed to Cog unchecked (Cog checks them itself, with less precise
// errors).
func (a *Adapter) LoadSchema(ctx context.Context) error {
	s, err := FetchSchema(ctx, a.client, "http://"+a.upstream)
	if err != nil {
		return err
	}
	a.schema.Store(s)
	return nil
}

// Schema is the model's Input schema, or nil when none was loaded.
func (a *Adapter) Schema() *Schema { return a.schema.Load() }

func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		a.pass(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxInputBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "input_too_large", fmt.Sprintf("input larger than %d bytes", MaxInputBytes), "")
		return
	}
	native := r.URL.Path == "/predictions"
	input := body
	if native {
		var req struct {
			Input json.RawMessage `json:"input"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid_input", "body: want a Cog prediction request {\"input\": {…}}: "+err.Error(), "")
			return
		}
		input = req.Input
	}
	fields, msg := a.check(input)
	if msg != "" {
		writeError(w, http.StatusUnprocessableEntity, "invalid_input", msg, "")
		return
	}
	if !native && a.callbacks != nil && (wantsStream(r) || r.Header.Get("Ember-Prediction-Id") != "") {
		a.predictAsync(w, r, fields)
		return
	}
	if !native {
		body, _ = json.Marshal(struct {
			Input map[string]json.RawMessage `json:"input"`
		}{fields})
	}
	resp, err := a.post(r.Context(), body, false)
	if err != nil {
		if r.Context().Err() != nil {
			return // the caller left; Ember's gateway says so
		}
		writeError(w, http.StatusBadGateway, "upstream_unreachable", "cog server: "+err.Error(), "")
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		writeError(w, http.StatusBadGateway, "upstream_error", "reading the cog server's answer: "+err.Error(), "")
		return
	}
	if len(raw) > MaxResponseBytes {
		writeError(w, http.StatusBadGateway, "output_too_large", fmt.Sprintf("the cog server's answer is larger than %d bytes", MaxResponseBytes), "")
		return
	}
	if native && resp.StatusCode != http.StatusUnprocessableEntity {
		if raw, err = linkFiles(a.files, raw); err != nil {
			writeError(w, http.StatusInternalServerError, "file_store", err.Error(), "")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		w.Write(raw)
		return
	}
	a.respond(w, r, resp.StatusCode, raw)
}

// check parses input as a JSON object and validates it against the
// schema; msg is the 422's message when it does not pass.
func (a *Adapter) check(input []byte) (fields map[string]json.RawMessage, msg string) {
	fields, err := a.schema.Load().parse(input)
	if err != nil {
		return nil, err.Error()
	}
	return fields, ""
}

// respond maps Cog's answer onto Ember's result.
func (a *Adapter) respond(w http.ResponseWriter, r *http.Request, status int, raw []byte) {
	switch status {
	case http.StatusOK:
	case http.StatusUnprocessableEntity:
		writeError(w, http.StatusUnprocessableEntity, "invalid_input", "invalid input: "+unprocessable(raw), "")
		return
	case http.StatusConflict:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "instance_busy", "the cog server is already running a prediction", "")
		return
	default:
		writeError(w, http.StatusBadGateway, "upstream_error", fmt.Sprintf("cog server answered HTTP %d: %s", status, clip(raw, 500)), "")
		return
	}
	var p prediction
	if err := json.Unmarshal(raw, &p); err != nil {
		writeError(w, http.StatusBadGateway, "upstream_error", "the cog server's answer is not a prediction: "+err.Error(), "")
		return
	}
	if p.Status != "succeeded" {
		msg := "prediction " + p.Status
		var e string
		if json.Unmarshal(p.Error, &e) == nil && e != "" {
			msg += ": " + e
		}
		writeError(w, http.StatusInternalServerError, "prediction_failed", msg, p.Logs)
		return
	}
	out, err := linkFiles(a.files, p.Output)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "file_store", err.Error(), "")
		return
	}
	if len(bytes.TrimSpace(out)) == 0 {
		out = json.RawMessage("null")
	}
	if len(p.Metrics) > 0 {
		var m struct {
			PredictTime float64 `json:"predict_time"`
		}
		if json.Unmarshal(p.Metrics, &m) == nil && m.PredictTime > 0 {
			w.Header().Set("Ember-Cog-Predict-Time", fmt.Sprintf("%.6f", m.PredictTime))
		}
	}
	if wantsStream(r) {
		streamOutput(w, out, p.Logs)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// wantsStream: the caller asked for SSE and not for JSON.
func wantsStream(r *http.Request) bool {
	acc := r.Header.Get("Accept")
	return strings.Contains(acc, "text/event-stream") && !strings.Contains(acc, "application/json")
}

// streamOutput writes a list output as one SSE output event per item
// (Cog's ConcatenateIterator yields), anything else as one event.
func streamOutput(w http.ResponseWriter, out json.RawMessage, logs string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	var items []json.RawMessage
	if json.Unmarshal(out, &items) != nil {
		items = []json.RawMessage{out}
	}
	if logs != "" {
		for l := range strings.SplitSeq(strings.TrimRight(logs, "\n"), "\n") {
			fmt.Fprintf(w, "event: logs\ndata: %s\n\n", l)
		}
	}
	for _, it := range items {
		fmt.Fprintf(w, "event: output\ndata: %s\n\n", bytes.ReplaceAll(it, []byte("\n"), []byte("\\n")))
	}
	io.WriteString(w, "event: done\ndata: {}\n\n")
}

// unprocessable names the fields of a FastAPI/pydantic 422
// ({"detail": [{"loc": ["body", "input", "x"], "msg": …}]}).
func unprocessable(raw []byte) string {
	var d struct {
		Detail []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		} `json:"detail"`
	}
	if json.Unmarshal(raw, &d) != nil || len(d.Detail) == 0 {
		return clip(raw, 500)
	}
	var parts []string
	for _, e := range d.Detail {
		var path []string
		for _, l := range e.Loc {
			if s := fmt.Sprint(l); s != "body" {
				path = append(path, s)
			}
		}
		parts = append(parts, strings.Join(path, ".")+": "+e.Msg)
	}
	return strings.Join(parts, "; ")
}

func clip(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// errorBody is Ember's error envelope (api.Error) plus Cog's logs.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Logs string `json:"logs,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg, logs string) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Logs = code, msg, logs
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

// pass forwards a GET (openapi.json, health-check, …) to the Cog server.
func (a *Adapter) pass(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not supported by a cog function (POST the input)", "")
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+a.upstream+r.URL.RequestURI(), nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error(), "")
		return
	}
	resp, err := a.client.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "upstream_unreachable", "cog server: "+err.Error(), "")
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, MaxResponseBytes))
}

// busyWait bounds how long a prediction waits for a Cog server that says
// it is busy (409): Ember sends one prediction at a time (concurrency 1),
// so a 409 is the previous prediction's last moments (Cog may send its
// completed webhook before it takes the next).
const busyWait = 2 * time.Second

// post sends a prediction request to Cog, retrying while it answers 409
// (up to busyWait, backing off from 2 ms to 100 ms). A 409 that outlasts
// busyWait is returned as is.
func (a *Adapter) post(ctx context.Context, body []byte, async bool) (*http.Response, error) {
	deadline := time.Now().Add(busyWait)
	pause := 2 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.upstream+"/predictions", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if async {
			req.Header.Set("Prefer", "respond-async")
		}
		resp, err := a.client.Do(req)
		if err != nil || resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			return resp, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}
