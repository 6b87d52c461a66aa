// Command cog is a test fixture that speaks Cog's HTTP API (the server
// `cog build` puts in every image) as Cog documents it, for a toy model:
//
//	GET  /health-check  {"status": STARTING|READY|BUSY|SETUP_FAILED, "setup": {…, "logs"}}
//	GET  /openapi.json  the model's schema; components.schemas.Input is its inputs
//	POST /predictions   {"input": {…}} → {"status", "output", "error", "logs", "metrics", …}
//
// The model: prompt (string, required), repeat (integer 1..10, default 1),
// style (choice "plain" or "shout", default "plain"), fail (boolean),
// as_file (boolean): it returns a list of strings, one per repeat (what a
// Cog predictor that yields, a ConcatenateIterator, returns), each as a
// text file when as_file is true (Cog returns files as data URLs when it
// has no upload URL), or fails with an error when fail is true. Inputs are checked as Cog checks them (pydantic): a
// missing, unknown or mistyped field is a 422 with a FastAPI detail list.
//
// Like Cog it runs one prediction at a time (a second gets 409) and
// listens on $PORT or 5000. With Prefer: respond-async it answers 202 and
// sends the prediction's start, output, logs and completed events to the
// request's webhook (filtered by webhook_events_filter), as Cog does;
// POST /predictions/{id}/cancel cancels it. COG_SETUP_FAIL makes setup() fail with that
// text in its logs; COG_SETUP_DELAY (a Go duration) makes it slow.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

type server struct {
	mu        sync.Mutex // guards the following
	setup     string     // "", "succeeded", "failed"
	setupLogs strings.Builder
	started   time.Time
	done      time.Time
	busy      bool
	cancel    map[string]chan struct{} // running async predictions by id
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	s := &server{started: time.Now(), cancel: map[string]chan struct{}{}}
	go s.runSetup(os.Getenv("COG_SETUP_FAIL"), os.Getenv("COG_SETUP_DELAY"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			writeJSON(w, 404, map[string]string{"detail": "Not Found"})
			return
		}
		writeJSON(w, 200, map[string]string{"docs_url": "/docs", "openapi_url": "/openapi.json"})
	})
	mux.HandleFunc("GET /health-check", s.health)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(openapi))
	})
	mux.HandleFunc("POST /predictions", s.predict)
	mux.HandleFunc("POST /predictions/{id}/cancel", s.cancelPrediction)
	srv := &http.Server{Addr: "0.0.0.0:" + port, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("cog fixture listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// runSetup plays Predictor.setup(): its output goes to the setup logs.
func (s *server) runSetup(fail, delay string) {
	d, _ := time.ParseDuration(delay)
	s.mu.Lock()
	s.setupLogs.WriteString("loading weights\n")
	s.mu.Unlock()
	time.Sleep(d) // the model load this fixture stands for
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = time.Now()
	if fail != "" {
		s.setupLogs.WriteString("Traceback (most recent call last):\nRuntimeError: " + fail + "\n")
		s.setup = "failed"
		log.Printf("setup failed: %s", fail)
		return
	}
	s.setupLogs.WriteString("weights loaded\n")
	s.setup = "succeeded"
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := "STARTING"
	switch {
	case s.setup == "failed":
		status = "SETUP_FAILED"
	case s.setup == "succeeded" && s.busy:
		status = "BUSY"
	case s.setup == "succeeded":
		status = "READY"
	}
	setup := map[string]any{"started_at": s.started.UTC().Format(time.RFC3339Nano), "logs": s.setupLogs.String(), "status": nil}
	if s.setup != "" {
		setup["status"] = s.setup
		setup["completed_at"] = s.done.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, 200, map[string]any{"status": status, "setup": setup})
}

type detail struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

func (s *server) predict(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID                  string                     `json:"id"`
		Input               map[string]json.RawMessage `json:"input"`
		Webhook             string                     `json:"webhook"`
		WebhookEventsFilter []string                   `json:"webhook_events_filter"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, 422, map[string]any{"detail": []detail{{Loc: []string{"body"}, Msg: err.Error(), Type: "value_error.jsondecode"}}})
		return
	}
	in, errs := parseInput(req.Input)
	if len(errs) > 0 {
		writeJSON(w, 422, map[string]any{"detail": errs})
		return
	}
	s.mu.Lock()
	if s.setup != "succeeded" || s.busy {
		s.mu.Unlock()
		writeJSON(w, 409, map[string]string{"detail": "Already running a prediction"})
		return
	}
	s.busy = true
	stop := make(chan struct{})
	s.cancel[req.ID] = stop
	s.mu.Unlock()
	p := &prediction{ID: req.ID, Input: req.Input, Status: "starting", CreatedAt: now()}
	release := func() {
		s.mu.Lock()
		s.busy = false
		delete(s.cancel, req.ID)
		s.mu.Unlock()
	}
	if strings.Contains(r.Header.Get("Prefer"), "respond-async") {
		// Cog's async API: 202 now, the prediction's states to the webhook.
		writeJSON(w, 202, p.snapshot())
		hook := newWebhook(req.Webhook, req.WebhookEventsFilter)
		go func() {
			defer release()
			run(p, in, stop, hook.send)
		}()
		return
	}
	defer release()
	run(p, in, stop, func(string, map[string]any) {})
	writeJSON(w, 200, p.snapshot())
}

func (s *server) cancelPrediction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	stop, ok := s.cancel[r.PathValue("id")]
	if ok {
		delete(s.cancel, r.PathValue("id"))
		close(stop)
	}
	s.mu.Unlock()
	if !ok {
		writeJSON(w, 404, map[string]string{"detail": "Not Found"})
		return
	}
	writeJSON(w, 200, map[string]any{})
}

// prediction is Cog's prediction response, built up as the model runs.
type prediction struct {
	mu        sync.Mutex // guards the following
	ID        string
	Input     map[string]json.RawMessage
	Status    string
	Output    []string
	Error     any
	Logs      string
	CreatedAt string
	started   time.Time
	completed string
	metrics   map[string]float64
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func (p *prediction) snapshot() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]any{"id": p.ID, "input": p.Input, "status": p.Status, "output": p.Output, "error": p.Error,
		"logs": p.Logs, "created_at": p.CreatedAt, "version": nil}
	if p.Output == nil {
		m["output"] = nil
	}
	if !p.started.IsZero() {
		m["started_at"] = p.started.UTC().Format(time.RFC3339Nano)
	}
	if p.completed != "" {
		m["completed_at"], m["metrics"] = p.completed, p.metrics
	}
	return m
}

// run plays predict(): a generator yielding one item per repeat, each
// sent as an "output" event (Cog sends the whole output so far), then
// "completed".
func run(p *prediction, in input, stop <-chan struct{}, send func(event string, pred map[string]any)) {
	update := func(event string, f func()) {
		p.mu.Lock()
		f()
		p.mu.Unlock()
		send(event, p.snapshot())
	}
	update("start", func() { p.Status, p.started = "processing", time.Now() })
	update("logs", func() { p.Logs += fmt.Sprintf("predicting %d item(s)\n", in.repeat) })
	finish := func(status string, err any) {
		update("completed", func() {
			p.Status, p.Error, p.completed = status, err, now()
			p.metrics = map[string]float64{"predict_time": time.Since(p.started).Seconds()}
		})
	}
	if in.fail {
		update("logs", func() { p.Logs += "raising ValueError\n" })
		finish("failed", "ValueError: the model refused the prompt "+strconvQuote(in.prompt))
		return
	}
	for i := range in.repeat {
		select {
		case <-stop:
			finish("canceled", nil)
			return
		case <-time.After(time.Duration(in.delayMS) * time.Millisecond): // the model's work per item
		}
		item := in.prompt
		if in.style == "shout" {
			item = strings.ToUpper(item)
		}
		item = fmt.Sprintf("%s#%d ", item, i+1)
		if in.asFile {
			item = "data:text/plain;base64," + base64.StdEncoding.EncodeToString([]byte(item))
		}
		update("output", func() { p.Output = append(p.Output, item) })
	}
	finish("succeeded", nil)
}

// webhook sends a prediction's events to its webhook URL, as Cog does:
// only the events in the filter (all when none), terminal ones retried.
type webhook struct {
	url    string
	filter map[string]bool
	client *http.Client
}

func newWebhook(url string, filter []string) *webhook {
	w := &webhook{url: url, filter: map[string]bool{}, client: &http.Client{Timeout: 10 * time.Second}}
	for _, f := range filter {
		w.filter[f] = true
	}
	return w
}

func (w *webhook) send(event string, pred map[string]any) {
	if w.url == "" || (len(w.filter) > 0 && !w.filter[event]) {
		return
	}
	body, _ := json.Marshal(pred)
	tries := 1
	if event == "completed" {
		tries = 5
	}
	for i := range tries {
		resp, err := w.client.Post(w.url, "application/json", strings.NewReader(string(body)))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		log.Printf("webhook %s: %v", event, err)
		time.Sleep(time.Duration(100*(i+1)) * time.Millisecond) // Cog's backoff between retries
	}
}

type input struct {
	prompt, style string
	repeat        int
	delayMS       int
	fail, asFile  bool
}

// parseInput checks inputs as Cog's pydantic model does.
func parseInput(raw map[string]json.RawMessage) (input, []detail) {
	in := input{repeat: 1, style: "plain"}
	var errs []detail
	bad := func(field, msg, typ string) {
		errs = append(errs, detail{Loc: []string{"body", "input", field}, Msg: msg, Type: typ})
	}
	for k := range raw {
		switch k {
		case "prompt", "repeat", "style", "fail", "as_file", "delay_ms":
		default:
			bad(k, "extra fields not permitted", "value_error.extra")
		}
	}
	if v, ok := raw["prompt"]; !ok {
		bad("prompt", "field required", "value_error.missing")
	} else if json.Unmarshal(v, &in.prompt) != nil {
		bad("prompt", "str type expected", "type_error.str")
	}
	if v, ok := raw["repeat"]; ok {
		if json.Unmarshal(v, &in.repeat) != nil {
			bad("repeat", "value is not a valid integer", "type_error.integer")
		} else if in.repeat < 1 || in.repeat > 10 {
			bad("repeat", "ensure this value is between 1 and 10", "value_error.number")
		}
	}
	if v, ok := raw["style"]; ok {
		if json.Unmarshal(v, &in.style) != nil || (in.style != "plain" && in.style != "shout") {
			bad("style", "value is not a valid enumeration member; permitted: 'plain', 'shout'", "type_error.enum")
		}
	}
	if v, ok := raw["fail"]; ok && json.Unmarshal(v, &in.fail) != nil {
		bad("fail", "value could not be parsed to a boolean", "type_error.bool")
	}
	if v, ok := raw["delay_ms"]; ok && (json.Unmarshal(v, &in.delayMS) != nil || in.delayMS < 0 || in.delayMS > 60000) {
		bad("delay_ms", "ensure this value is between 0 and 60000", "value_error.number")
	}
	if v, ok := raw["as_file"]; ok && json.Unmarshal(v, &in.asFile) != nil {
		bad("as_file", "value could not be parsed to a boolean", "type_error.bool")
	}
	return in, errs
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// openapi is the document Cog generates for this model's predict()
// signature (abridged to the parts clients read).
const openapi = `{
  "openapi": "3.0.2",
  "info": {"title": "Cog", "version": "0.1.0"},
  "paths": {
    "/predictions": {"post": {"summary": "Predict",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}},
      "responses": {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionResponse"}}}}}}},
    "/health-check": {"get": {"summary": "Healthcheck"}}
  },
  "components": {"schemas": {
    "Input": {"title": "Input", "type": "object", "required": ["prompt"], "properties": {
      "prompt": {"title": "Prompt", "type": "string", "description": "Text to echo", "x-order": 0},
      "repeat": {"title": "Repeat", "type": "integer", "description": "How many items to yield", "default": 1, "minimum": 1, "maximum": 10, "x-order": 1},
      "style": {"allOf": [{"$ref": "#/components/schemas/style"}], "description": "plain or shout", "default": "plain", "x-order": 2},
      "fail": {"title": "Fail", "type": "boolean", "description": "Raise an error instead", "default": false, "x-order": 3},
      "as_file": {"title": "As File", "type": "boolean", "description": "Return each item as a text file", "default": false, "x-order": 4},
      "delay_ms": {"title": "Delay Ms", "type": "integer", "description": "Work per item", "default": 0, "minimum": 0, "maximum": 60000, "x-order": 5}
    }},
    "style": {"title": "style", "description": "An enumeration.", "enum": ["plain", "shout"], "type": "string"},
    "Output": {"title": "Output", "type": "array", "items": {"type": "string"}, "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"},
    "PredictionRequest": {"title": "PredictionRequest", "type": "object", "properties": {"id": {"type": "string"}, "input": {"$ref": "#/components/schemas/Input"}}},
    "PredictionResponse": {"title": "PredictionResponse", "type": "object", "properties": {"status": {"type": "string"}, "output": {"$ref": "#/components/schemas/Output"}, "error": {"type": "string"}, "logs": {"type": "string"}, "metrics": {"type": "object"}}}
  }}
}`
