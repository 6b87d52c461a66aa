// Command sim is a simulated model server: a small, dependency-free HTTP
// server that behaves like an inference server (slow start, model load,
// predictions, token streaming, crashes on demand) without a model. Ember's
// end-to-end tests and the README tour run it as a function, and it is a
// template for wrapping a real model:
//
//	name: sim
//	runtime: process
//	command: ["./sim", "--port", "${PORT}"]
//
// Behaviour is set with flags or, for each flag, an environment variable
// (the flag wins):
//
//	--port         PORT                port to listen on
//	--host         SIM_HOST            address to listen on (default 127.0.0.1; 0.0.0.0 in a
//	                                   container whose port is published)
//	--alloc-mb     SIM_ALLOC_MB        allocate and touch this many MiB before listening
//	                                   (simulates loading weights into memory; tests memory limits)
//	--start-delay  SIM_START_DELAY     wait before listening (simulates process boot), e.g. 2s
//	--load-delay   SIM_LOAD_DELAY      wait between listening and /health answering 200
//	                                   (simulates loading weights), e.g. 500ms
//	--fail-start   SIM_FAIL_START      exit 1 before listening (true/1; any other
//	                                   non-boolean value is used as the error message)
//	--ignore-term  SIM_IGNORE_SIGTERM  ignore SIGTERM (simulates a server that hangs on shutdown)
//	--json-type    SIM_JSON_TYPE       Content-Type of the non-streaming JSON answers of the
//	                                   OpenAI endpoints (default application/json; e.g. text/plain
//	                                   simulates a server that mislabels its JSON)
//	--notify       SIM_NOTIFY          when ready, write "READY=1" to the descriptor in
//	                                   $EMBER_READY_FD (the runtime contract's readiness notification)
//	--exec-log     SIM_EXEC_LOG        append "<id> <instance>" to this file when a /predict with
//	                                   an "id" starts executing: a count of executions per input
//	                                   that outlives the instance (a crash test's instances die
//	                                   with the node that ran them; an in-memory count would too)
//
// Endpoints:
//
//	GET  /health               200 "ok" once loaded, 503 before
//	POST /predict              {"sleep_ms":N,"echo":any,"fail":bool,"crash":bool,"id":string}
//	                           -> {"output":...,"instance":...,"in_flight":n}
//	POST /v1/chat/completions  OpenAI-style; "stream":true streams one word per SSE event
//	                           ("interval_ms" sets the pace)
//	POST /v1/embeddings        OpenAI-style; each input string s embeds as
//	                           [runes in s, words in s, index, 0.25]; "encoding_format":
//	                           "base64" gives little-endian float32s in base64, as OpenAI does
//	GET  /stream?n=5&interval_ms=100 (any method; async jobs POST here)
//	                           n SSE events, then "data: [DONE]"; without the query,
//	                           SIM_STREAM_N and SIM_STREAM_INTERVAL_MS set them (a job's path has none)
//	GET  /stats                {"max_in_flight":N,"in_flight":n,"served":m,"conns":c}
//	                           (conns: connections accepted, the platform's probes' too)
//	/whoami (any method)       {"headers":{...},"env":["NAME=value",...]}: what reached
//	                           the process (tests check that nothing of Ember's leaks)
//	any other                  echoes method, path, query, headers and body (?sleep_ms=N)
//
// When it becomes ready it prints "EMBER_SIM_READY <unix nanoseconds>" so a
// harness can measure how quickly the platform noticed.
package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

// config holds the simulation knobs.
type config struct {
	port       string
	startDelay time.Duration
	loadDelay  time.Duration
	failStart  string // "" means start normally; otherwise the error to exit with
	ignoreTerm bool
	jsonType   string // Content-Type of the OpenAI endpoints' JSON answers
	notify     bool   // write READY=1 to $EMBER_READY_FD when ready
	host       string
	allocMB    int
	execLog    string // file each /predict with an id is appended to
}

func parseConfig(args []string) (config, error) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	var c config
	var startDelay, loadDelay, failStart, ignoreTerm, notify string
	fs.StringVar(&c.port, "port", os.Getenv("PORT"), "port to listen on (env PORT)")
	fs.StringVar(&startDelay, "start-delay", os.Getenv("SIM_START_DELAY"), "delay before listening (env SIM_START_DELAY)")
	fs.StringVar(&loadDelay, "load-delay", os.Getenv("SIM_LOAD_DELAY"), "delay between listening and ready (env SIM_LOAD_DELAY)")
	fs.StringVar(&failStart, "fail-start", os.Getenv("SIM_FAIL_START"), "exit 1 before listening (env SIM_FAIL_START)")
	fs.StringVar(&ignoreTerm, "ignore-term", os.Getenv("SIM_IGNORE_SIGTERM"), "ignore SIGTERM (env SIM_IGNORE_SIGTERM)")
	fs.StringVar(&c.jsonType, "json-type", os.Getenv("SIM_JSON_TYPE"), "Content-Type of the OpenAI endpoints' JSON answers (env SIM_JSON_TYPE)")
	fs.StringVar(&notify, "notify", os.Getenv("SIM_NOTIFY"), "when ready, write READY=1 to the file descriptor in $EMBER_READY_FD (env SIM_NOTIFY)")
	fs.StringVar(&c.host, "host", os.Getenv("SIM_HOST"), "address to listen on (env SIM_HOST; default 127.0.0.1)")
	fs.StringVar(&c.execLog, "exec-log", os.Getenv("SIM_EXEC_LOG"), "append \"<id> <instance>\" to this file per /predict with an id (env SIM_EXEC_LOG)")
	allocMB := fs.String("alloc-mb", os.Getenv("SIM_ALLOC_MB"), "MiB to allocate and touch before listening (env SIM_ALLOC_MB)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.notify, _ = strconv.ParseBool(notify)
	if c.host == "" {
		c.host = "127.0.0.1"
	}
	if *allocMB != "" {
		n, err := strconv.Atoi(*allocMB)
		if err != nil || n < 0 {
			return c, fmt.Errorf("alloc-mb: want a number of MiB ≥ 0 (got %q)", *allocMB)
		}
		c.allocMB = n
	}
	if c.port == "" {
		return c, errors.New("no port: set PORT or --port")
	}
	var err error
	if c.startDelay, err = parseDelay("start-delay", startDelay); err != nil {
		return c, err
	}
	if c.loadDelay, err = parseDelay("load-delay", loadDelay); err != nil {
		return c, err
	}
	// A boolean turns the failure on or off; anything else is the message,
	// so a test can check that the platform shows the instance's own words.
	if on, err := strconv.ParseBool(failStart); err == nil {
		if on {
			c.failStart = "simulated start failure (SIM_FAIL_START)"
		}
	} else if failStart != "" {
		c.failStart = failStart
	}
	c.ignoreTerm, _ = strconv.ParseBool(ignoreTerm)
	if c.jsonType == "" {
		c.jsonType = "application/json"
	}
	return c, nil
}

// notifyReady tells the platform the instance is ready, through the file
// descriptor named in $EMBER_READY_FD (docs/runtime-contract.md). Without
// the variable there is no one to tell.
func notifyReady(l *log.Logger) {
	fd, err := strconv.Atoi(os.Getenv("EMBER_READY_FD"))
	if err != nil || fd < 3 {
		return
	}
	f := os.NewFile(uintptr(fd), "ember-ready")
	if _, err := f.WriteString("READY=1\n"); err != nil {
		l.Printf("readiness notification: %v", err)
	}
	f.Close()
}

func parseDelay(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func run(args []string) error {
	c, err := parseConfig(args)
	if err != nil {
		return err
	}
	stopSignals := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if c.ignoreTerm {
		stopSignals = stopSignals[:1]
		signal.Ignore(syscall.SIGTERM)
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()

	if !sleepCtx(ctx, c.startDelay) {
		return nil // stopped while "booting"
	}
	if c.failStart != "" {
		return errors.New(c.failStart)
	}
	weights := allocate(c.allocMB)

	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, c.port))
	if err != nil {
		return err
	}
	s := &server{
		instance: os.Getenv("EMBER_INSTANCE"),
		jsonType: c.jsonType,
		log:      log.New(os.Stdout, "sim: ", log.Ltime|log.Lmicroseconds),
	}
	if c.execLog != "" {
		// O_APPEND: each line is one write at the file's end, so
		// instances sharing the file never interleave their lines.
		f, err := os.OpenFile(c.execLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("exec-log: %w", err)
		}
		defer f.Close()
		s.execLog = f
	}
	s.log.Printf("pid %d listening on %s (load delay %s)", os.Getpid(), ln.Addr(), c.loadDelay)

	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// Model "load": listening but not ready, as a real server that binds
	// its port before its weights are in memory.
	if sleepCtx(ctx, c.loadDelay) {
		readyAt := time.Now() // taken before the flag flips, so a probe can never beat it
		s.ready.Store(true)
		fmt.Printf("EMBER_SIM_READY %d\n", readyAt.UnixNano())
		if c.notify {
			notifyReady(s.log)
		}
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	s.log.Printf("shutting down (held %d MiB)", len(weights)>>20)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// allocate returns mb MiB with every page written, so the memory is
// resident (counted against a container's limit), as loaded weights are.
func allocate(mb int) []byte {
	if mb <= 0 {
		return nil
	}
	fmt.Printf("sim: allocating %d MiB\n", mb)
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}

// sleepCtx waits for d and reports whether ctx was still live afterwards.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// server is the simulated model server's state.
type server struct {
	instance string
	jsonType string // Content-Type of the OpenAI endpoints' JSON answers
	log      *log.Logger
	ready    atomic.Bool
	execLog  *os.File // nil: executions are not logged

	// Concurrency accounting, so tests can check that the platform never
	// sent more concurrent requests than the function allows.
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	served      atomic.Int64
	conns       atomic.Int64 // connections accepted, probes' included
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	// Health and stats are the platform's and the test's, not load: they
	// are not counted as requests.
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /stats", s.stats)
	mux.Handle("POST /predict", s.counted(s.predict))
	mux.Handle("POST /v1/chat/completions", s.counted(s.chat))
	mux.Handle("POST /v1/embeddings", s.counted(s.embeddings))
	mux.Handle("/stream", s.counted(s.stream)) // any method: async jobs POST to it
	mux.Handle("/whoami", s.counted(s.whoami))
	mux.Handle("/file", s.counted(s.file))
	mux.Handle("/", s.counted(s.echo))
	return s.logged(mux)
}

// logged writes one line per request to stdout. Health checks are left
// out: the platform probes every few milliseconds while an instance loads,
// and those lines would push the useful ones out of its log tail.
func (s *server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Printf("%s %s %d %s", r.Method, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Microsecond))
	})
}

// counted tracks concurrent requests and the maximum seen.
func (s *server) counted(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inFlight.Add(1)
		for {
			m := s.maxInFlight.Load()
			if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		defer func() {
			s.inFlight.Add(-1)
			s.served.Add(1)
		}()
		h(w, r)
	})
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "loading", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok")
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int64{
		"max_in_flight": s.maxInFlight.Load(),
		"in_flight":     s.inFlight.Load(),
		"served":        s.served.Load(),
		"conns":         s.conns.Load(),
	})
}

// predictRequest is the body of POST /predict.
type predictRequest struct {
	SleepMS int             `json:"sleep_ms"`
	Echo    json.RawMessage `json:"echo"`
	Fail    bool            `json:"fail"`
	Crash   bool            `json:"crash"`
	ID      string          `json:"id"` // logged to --exec-log when set
}

func (s *server) predict(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	var req predictRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON: " + err.Error()})
			return
		}
	}
	if req.ID != "" && s.execLog != nil {
		line := strings.NewReplacer("\n", " ", " ", "_").Replace(req.ID) + " " + s.instance + "\n"
		if _, err := s.execLog.WriteString(line); err != nil {
			s.log.Printf("exec-log: %v", err)
		}
	}
	if req.Crash {
		// Die mid-request, with no response, as a server hit by an
		// out-of-memory kill or a segfault would.
		s.log.Printf("crashing as requested")
		os.Exit(2)
	}
	if !sleepCtx(r.Context(), time.Duration(req.SleepMS)*time.Millisecond) {
		return // the client went away
	}
	if req.Fail {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "requested failure"})
		return
	}
	output := req.Echo
	if output == nil {
		output = json.RawMessage(body)
	}
	if len(output) == 0 {
		output = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"output":    output,
		"instance":  s.instance,
		"in_flight": s.inFlight.Load(),
	})
}

// echo answers any other request with what it received.
func (s *server) echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if ms, err := strconv.Atoi(r.URL.Query().Get("sleep_ms")); err == nil {
		if !sleepCtx(r.Context(), time.Duration(ms)*time.Millisecond) {
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"method":   r.Method,
		"path":     r.URL.Path,
		"query":    r.URL.Query(),
		"headers":  r.Header,
		"body":     string(body),
		"instance": s.instance,
	})
}

// whoami answers with the request's headers and the process environment.
func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	writeJSON(w, http.StatusOK, map[string]any{"headers": r.Header, "env": os.Environ()})
}

// stream sends n server-sent events, one per interval, flushing each so
// the client sees them as they are produced.
func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	n := queryInt(r, "n", envInt("SIM_STREAM_N", 5))
	interval := time.Duration(queryInt(r, "interval_ms", envInt("SIM_STREAM_INTERVAL_MS", 100))) * time.Millisecond
	sse := startSSE(w)
	for i := range n {
		if i > 0 && !sleepCtx(r.Context(), interval) {
			return
		}
		sse.send(map[string]int64{"i": int64(i), "t": time.Now().UnixNano()})
	}
	sse.done()
}

// chatRequest is the part of an OpenAI chat completion request sim reads.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
	Stream     bool `json:"stream"`
	IntervalMS int  `json:"interval_ms"` // sim extension: pause between streamed words
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": map[string]string{"message": "invalid JSON: " + err.Error(), "type": "invalid_request_error"},
		})
		return
	}
	if req.Model == "" {
		req.Model = "sim"
	}
	// The "model" answers by repeating the last user message.
	prompt := ""
	for _, m := range req.Messages {
		if text, ok := m.Content.(string); ok && m.Role == "user" {
			prompt = text
		}
	}
	reply := "You said: " + prompt
	id := fmt.Sprintf("chatcmpl-sim-%d", time.Now().UnixNano())
	created := time.Now().Unix()
	words := strings.Fields(reply)

	if !req.Stream {
		writeJSONAs(w, s.jsonType, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []map[string]any{{
				"index":         0,
				"message":       map[string]string{"role": "assistant", "content": reply},
				"finish_reason": "stop",
			}},
			"usage": map[string]int{
				"prompt_tokens":     len(strings.Fields(prompt)),
				"completion_tokens": len(words),
				"total_tokens":      len(strings.Fields(prompt)) + len(words),
			},
		})
		return
	}

	chunk := func(delta map[string]string, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}},
		}
	}
	interval := time.Duration(req.IntervalMS) * time.Millisecond
	sse := startSSE(w)
	for i, word := range words {
		if i > 0 {
			word = " " + word
			if !sleepCtx(r.Context(), interval) {
				return
			}
		}
		delta := map[string]string{"content": word}
		if i == 0 {
			delta["role"] = "assistant"
		}
		sse.send(chunk(delta, nil))
	}
	sse.send(chunk(map[string]string{}, "stop"))
	sse.done()
}

// embeddingsRequest is the part of an OpenAI embeddings request sim reads.
type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

// embeddings answers with a small vector per input that a test can
// predict: [runes, words, index, 0.25], exact in float32.
func (s *server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingsRequest
	err := json.NewDecoder(r.Body).Decode(&req)
	var inputs []string
	if err == nil {
		var one string
		if json.Unmarshal(req.Input, &one) == nil {
			inputs = []string{one}
		} else {
			err = json.Unmarshal(req.Input, &inputs)
		}
	}
	if err != nil || len(inputs) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": map[string]string{"message": `"input" must be a string or a non-empty list of strings`, "type": "invalid_request_error"},
		})
		return
	}
	data := make([]map[string]any, len(inputs))
	words := 0
	for i, in := range inputs {
		vec := []float32{float32(len([]rune(in))), float32(len(strings.Fields(in))), float32(i), 0.25}
		words += len(strings.Fields(in))
		var emb any = vec
		if req.EncodingFormat == "base64" {
			b := make([]byte, 0, 4*len(vec))
			for _, f := range vec {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	if req.Model == "" {
		req.Model = "sim"
	}
	writeJSONAs(w, s.jsonType, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": words, "total_tokens": words},
	})
}

// sseWriter writes server-sent events and flushes after each one.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) sseWriter {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s sseWriter) send(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(s.w, "data: %s\n\n", b)
	s.rc.Flush()
}

func (s sseWriter) done() {
	io.WriteString(s.w, "data: [DONE]\n\n")
	s.rc.Flush()
}

func queryInt(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONAs(w, "application/json", status, v)
}

// writeJSONAs writes v as JSON labelled with contentType (which a
// misbehaving server may get wrong).
func writeJSONAs(w http.ResponseWriter, contentType string, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// statusRecorder remembers the status code for the request log. Unwrap
// lets http.ResponseController reach the real writer to flush streams.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
