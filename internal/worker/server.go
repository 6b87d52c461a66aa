package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/ocr"
)

// Phase names a worker reports at GET /phases, in order. They refine the
// process driver's spawned → listening → ready.
const (
	PhaseProcessStart    = "process_start"    // the worker's main began
	PhaseListening       = "listening"        // the HTTP port is open
	PhaseRuntimeLoaded   = "runtime_loaded"   // ONNX Runtime library loaded, environment created
	PhaseLoadRequested   = "load_requested"   // (pool only) POST /load arrived
	PhaseModelRead       = "model_read"       // model files located and their bytes read/mapped
	PhaseSessionsCreated = "sessions_created" // ONNX Runtime sessions built
	PhaseWarmupDone      = "warmup_done"      // warm-up inference done (only when it runs; see WarmupMode)
)

// WarmupMode says whether a worker runs one inference on a blank input
// after loading, before /health turns 200.
type WarmupMode string

const (
	// WarmupAuto warms up the tasks where it pays: the text tasks, not OCR.
	// For OCR the warm-up ran on a blank 320×48 line, whose shapes are not
	// a real image's, so it moved little off the first request while
	// delaying ready by its whole length: load → first answer was never
	// slower without it and usually shorter by about the warm-up's length,
	// at equal CPU time (`go run ./bench/ocr -in-process`, section (d);
	// docs/onnx.md "Cutting cold start").
	WarmupAuto WarmupMode = "auto"
	WarmupOn   WarmupMode = "true"  // always
	WarmupOff  WarmupMode = "false" // never
)

// ParseWarmupMode parses a --warmup value: auto, or a boolean.
func ParseWarmupMode(v string) (WarmupMode, error) {
	switch strings.ToLower(v) {
	case "", "auto":
		return WarmupAuto, nil
	case "true", "1", "on":
		return WarmupOn, nil
	case "false", "0", "off":
		return WarmupOff, nil
	}
	return "", fmt.Errorf("warm-up mode %q: want auto, true or false", v)
}

// runs reports whether a model of task is warmed up under mode m.
func (m WarmupMode) runs(task string) bool {
	switch m {
	case WarmupOn:
		return true
	case WarmupOff:
		return false
	}
	return task != "ocr"
}

// Model is a loaded task model: an imageModel (OCR) or a textModel
// (text-classification, embeddings).
type Model interface {
	Warmup(ctx context.Context) error
	Close() error
}

// imageModel is the OCR task's model.
type imageModel interface {
	Recognize(ctx context.Context, img image.Image) (ocr.Result, error)
}

// LoadFunc loads the model for task from dir (a directory or a model
// reference the function resolves), with the task's options.
type LoadFunc func(ctx context.Context, task, dir string, opts TaskOptions) (Model, error)

// Tasks the worker serves.
var supportedTasks = []string{"ocr", TaskClassification, TaskEmbeddings}

// Server is the worker's HTTP surface. Build it with NewServer.
type Server struct {
	log       *slog.Logger
	load      LoadFunc
	maxBytes  int64
	maxPixels int64
	warmup    WarmupMode

	mu     sync.Mutex // guards the following
	phases []PhaseAt
	model  Model  // nil until a model is loaded
	task   string // task of model
	dir    string // model directory of model
	stats  map[string]any
	busy   bool // a load is in progress
	live   bool // the runtime is initialised: the worker can take a model
}

// PhaseAt is one cold-start phase, as served by GET /phases.
type PhaseAt struct {
	Name string `json:"name"`
	At   int64  `json:"at"` // Unix nanoseconds
}

// Config configures a Server.
type Config struct {
	// MaxBytes bounds an uploaded image (default 10 MiB).
	MaxBytes int64
	// MaxPixels bounds a decoded image's width×height (default
	// ocr.MaxPixels): larger images are refused with 400 before decoding.
	MaxPixels int64
	// Warmup says whether one inference runs after loading, before
	// /health turns 200 (zero: WarmupAuto).
	Warmup WarmupMode
}

// NewServer returns a server with no model loaded. start is when the
// process began (the process_start phase).
func NewServer(log *slog.Logger, load LoadFunc, cfg Config, start time.Time) *Server {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 10 << 20
	}
	if cfg.Warmup == "" {
		cfg.Warmup = WarmupAuto
	}
	s := &Server{log: log, load: load, maxBytes: cfg.MaxBytes, maxPixels: cfg.MaxPixels, warmup: cfg.Warmup}
	s.Phase(PhaseProcessStart, start)
	return s
}

// Phase records a cold-start phase.
func (s *Server) Phase(name string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phases = append(s.phases, PhaseAt{Name: name, At: at.UnixNano()})
}

// RuntimeLoaded records that ONNX Runtime is initialised, which makes GET
// /live answer 200 (a pooled worker is ready to be specialised).
func (s *Server) RuntimeLoaded(at time.Time) {
	s.Phase(PhaseRuntimeLoaded, at)
	s.mu.Lock()
	s.live = true
	s.mu.Unlock()
}

// Phases returns the phases recorded so far, in order.
func (s *Server) Phases() []PhaseAt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PhaseAt(nil), s.phases...)
}

// ErrLoaded is returned by Load when a different model is already loaded: a
// worker is specialised once, then belongs to one function.
var ErrLoaded = errors.New("worker: already specialised to another model")

// ErrLoading is returned by Load while another load is in progress.
var ErrLoading = errors.New("worker: a load is already in progress")

// ErrNotLive is returned by Load before the runtime is initialised.
var ErrNotLive = errors.New("worker: onnx runtime not initialised yet")

// ErrTask is wrapped for unsupported tasks.
var ErrTask = errors.New("unsupported task")

// Load loads task's model from dir, records the phases, and warms it up.
// Loading the model already loaded is a no-op.
func (s *Server) Load(ctx context.Context, task, dir string, opts TaskOptions) error {
	if !supported(task) {
		return fmt.Errorf("%w %q (supported: %s)", ErrTask, task, strings.Join(supportedTasks, ", "))
	}
	s.mu.Lock()
	switch {
	case s.model != nil && s.task == task && s.dir == dir:
		s.mu.Unlock()
		return nil
	case s.model != nil:
		s.mu.Unlock()
		return fmt.Errorf("%w (%s from %s)", ErrLoaded, s.task, s.dir)
	case s.busy:
		s.mu.Unlock()
		return ErrLoading
	case !s.live:
		s.mu.Unlock()
		return ErrNotLive
	}
	s.busy = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}()

	t0 := time.Now()
	m, err := s.load(ctx, task, dir, opts)
	if err != nil {
		return err
	}
	t1 := time.Now()
	s.Phase(PhaseSessionsCreated, t1)
	t2 := t1
	warm := s.warmup.runs(task)
	if warm {
		if err := m.Warmup(ctx); err != nil {
			m.Close()
			return err
		}
		t2 = time.Now()
		s.Phase(PhaseWarmupDone, t2)
	}
	stats := map[string]any{"load_ms": msf(t1.Sub(t0)), "warmup": warm, "warmup_ms": msf(t2.Sub(t1))}
	if ls, ok := m.(interface{ Stats() ocr.LoadStats }); ok {
		st := ls.Stats()
		stats["model_bytes"] = st.Bytes
		stats["read_ms"] = msf(st.Read)
		stats["session_ms"] = msf(st.Session)
	}
	if tm, ok := m.(textModel); ok {
		st := tm.Stats()
		stats["model_bytes"] = st.Bytes
		stats["read_ms"] = msf(st.Read)
		stats["session_ms"] = msf(st.Session)
		stats["max_length"] = tm.MaxLength()
	}
	s.mu.Lock()
	s.model, s.task, s.dir, s.stats = m, task, dir, stats
	s.mu.Unlock()
	s.log.Info("model loaded", "task", task, "dir", dir, "stats", stats)
	return nil
}

// Close releases the model.
func (s *Server) Close() error {
	s.mu.Lock()
	m := s.model
	s.model = nil
	s.mu.Unlock()
	if m != nil {
		return m.Close()
	}
	return nil
}

func supported(task string) bool {
	for _, t := range supportedTasks {
		if t == task {
			return true
		}
	}
	return false
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Handler serves:
//
//	GET  /health   200 once a model is loaded (and warmed up, if it is), else 503
//	GET  /live     200 once ONNX Runtime is initialised (pool members wait here)
//	GET  /phases   [{"name", "at"}] cold-start phases, at in Unix nanoseconds
//	POST /load     {"task", "model_dir"}: specialise a pooled worker
//	POST /, /predict   ocr: an image → {"text", "lines", "timings_ms"};
//	                   text tasks: {"text"} or {"texts"} (text.go)
//	POST /v1/embeddings  OpenAI's embeddings request (embeddings task)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		live := s.live
		s.mu.Unlock()
		if !live {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "live", "runtime": ocr.RuntimeVersion()})
	})
	mux.HandleFunc("GET /phases", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Phases())
	})
	mux.Handle("POST /load", s.wrap(s.handleLoad))
	mux.Handle("POST /{$}", s.wrap(s.handlePredict))
	mux.Handle("POST /predict", s.wrap(s.handlePredict))
	mux.Handle("POST /v1/embeddings", s.wrap(s.handleOpenAIEmbeddings))
	return mux
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	loaded, task, stats, busy := s.model != nil, s.task, s.stats, s.busy
	s.mu.Unlock()
	switch {
	case loaded:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "task": task, "runtime": ocr.RuntimeVersion(), "load": stats})
	case busy:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "loading"})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "idle", "runtime": ocr.RuntimeVersion()})
	}
}

// loadRequest is the body of POST /load.
type loadRequest struct {
	Task     string      `json:"task"`
	ModelDir string      `json:"model_dir"`
	Options  TaskOptions `json:"options"`
}

func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) error {
	s.Phase(PhaseLoadRequested, time.Now())
	var req loadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		return &httpError{Code: http.StatusBadRequest, Msg: "bad load request: " + err.Error(), Err: err}
	}
	if req.Task == "" || req.ModelDir == "" {
		return &httpError{Code: http.StatusBadRequest, Msg: `load request needs "task" and "model_dir"`}
	}
	if err := s.Load(r.Context(), req.Task, req.ModelDir, req.Options); err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrTask):
			code = http.StatusBadRequest
		case errors.Is(err, ErrLoaded), errors.Is(err, ErrLoading):
			code = http.StatusConflict
		case errors.Is(err, ErrNotLive):
			code = http.StatusServiceUnavailable
		}
		return &httpError{Code: code, Msg: err.Error(), Err: err}
	}
	s.mu.Lock()
	stats := s.stats
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "task": req.Task, "load": stats})
	return nil
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	if m == nil {
		return &httpError{Code: http.StatusServiceUnavailable, Msg: "no model loaded"}
	}
	if tm, ok := m.(textModel); ok {
		return s.handleText(w, r, tm)
	}
	im, ok := m.(imageModel)
	if !ok {
		return &httpError{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("model %T serves no requests", m)}
	}
	t0 := time.Now()
	b, err := readImage(r, s.maxBytes)
	if err != nil {
		return err
	}
	img, err := ocr.DecodeLimit(b, s.maxPixels)
	if err != nil {
		return &httpError{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	}
	decode := time.Since(t0)
	res, err := im.Recognize(r.Context(), img)
	if err != nil {
		if r.Context().Err() != nil {
			return &httpError{Code: 499, Msg: "client went away", Err: err}
		}
		return &httpError{Code: http.StatusInternalServerError, Msg: "inference failed", Err: err}
	}
	res.Timings["decode_ms"] = msf(decode)
	res.Timings["total_ms"] = msf(time.Since(t0))
	w.Header().Set("Server-Timing", serverTiming(res.Timings))
	writeJSON(w, http.StatusOK, res)
	return nil
}

// serverTiming renders timings as a Server-Timing header, e.g.
// "det;dur=41.2, rec;dur=30.8, total;dur=75.0", so the gateway and browsers
// show the split without parsing the body.
func serverTiming(t map[string]float64) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s;dur=%.1f", strings.TrimSuffix(k, "_ms"), t[k]))
	}
	return strings.Join(parts, ", ")
}

// httpError is an error with the status and message the client sees; Err,
// if set, is what the log sees.
type httpError struct {
	Code int
	Msg  string
	Err  error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *httpError) Unwrap() error { return e.Err }

// wrap turns a handler that returns an error into an http.Handler; it is the
// one place errors become responses. A panic in a handler becomes a 500 and
// a log line, and the worker keeps serving.
func (s *Server) wrap(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "path", r.URL.Path, "panic", p)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
			}
		}()
		err := h(w, r)
		if err == nil {
			return
		}
		he := &httpError{}
		if !errors.As(err, &he) {
			he = &httpError{Code: http.StatusInternalServerError, Msg: "internal error", Err: err}
		}
		var cause any = he.Msg
		if he.Err != nil {
			cause = he.Err
		}
		if he.Code >= 500 {
			s.log.Error("request failed", "path", r.URL.Path, "status", he.Code, "err", cause)
		} else {
			s.log.Debug("bad request", "path", r.URL.Path, "status", he.Code, "msg", he.Msg, "err", cause)
		}
		writeJSON(w, he.Code, map[string]string{"error": he.Msg})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
