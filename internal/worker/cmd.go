package worker

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/textmodel"
)

// flags of `ember worker onnx`.
type flags struct {
	port      int
	host      string
	task      string
	modelDir  string
	ortLib    string
	cacheDir  string
	pool      bool
	classify  bool
	threads   int
	maxBytes  int64
	maxPixels int64
	loadMode  string
	warmup    WarmupMode
	optCache  bool
	options   TaskOptions
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("ember worker onnx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defPort := 8080
	if p, err := strconv.Atoi(getenv("PORT")); err == nil {
		defPort = p
	}
	fs.IntVar(&f.port, "port", defPort, "port to serve HTTP on (default $PORT, else 8080; 0 picks a free one)")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address to listen on")
	fs.StringVar(&f.task, "task", "ocr", "task to serve: "+strings.Join(supportedTasks, ", "))
	fs.Func("options", `task options as JSON: {"max_length", "pooling", "normalize", "padding", "batch_max_size", "batch_max_delay_ms"}`, func(v string) error {
		d := json.NewDecoder(strings.NewReader(v))
		d.DisallowUnknownFields()
		return d.Decode(&f.options)
	})
	fs.StringVar(&f.modelDir, "model-dir", "", "model directory, or an npm:<name>@<version> reference to pull (required unless --pool)")
	fs.StringVar(&f.ortLib, "ort-lib", getenv("EMBER_ORT_LIB"), "ONNX Runtime shared library (default $EMBER_ORT_LIB, else pulled "+models.RuntimeRef+")")
	fs.StringVar(&f.cacheDir, "cache-dir", getenv("EMBER_CACHE_DIR"), "model and runtime cache (default $EMBER_CACHE_DIR, else <user cache>/ember)")
	fs.BoolVar(&f.pool, "pool", false, "start with ONNX Runtime initialised and no model; POST /load specialises the worker")
	fs.BoolVar(&f.classify, "classify", false, "run the text orientation classifier (turns upside-down lines)")
	fs.IntVar(&f.threads, "threads", 0, "ONNX Runtime intra-op threads per session (0: one per core)")
	fs.Int64Var(&f.maxBytes, "max-bytes", 10<<20, "largest accepted image upload in bytes")
	fs.Int64Var(&f.maxPixels, "max-pixels", ocr.MaxPixels, "largest accepted image in pixels (width×height), checked before decoding")
	fs.StringVar(&f.loadMode, "load", ocr.LoadMmap, "how model bytes are loaded: mmap or read")
	f.warmup = WarmupAuto
	fs.Var(&warmupFlag{&f.warmup}, "warmup", "run one inference after loading, before reporting healthy: auto (the text tasks, not ocr), true or false")
	fs.BoolVar(&f.optCache, "opt-cache", true, "cache graph-optimised models under <cache-dir>/optimized (faster later loads)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if !f.pool && f.modelDir == "" {
		return f, errors.New("--model-dir is required (or --pool)")
	}
	if f.loadMode != ocr.LoadMmap && f.loadMode != ocr.LoadRead {
		return f, fmt.Errorf("--load: want mmap or read, got %q", f.loadMode)
	}
	if !supported(f.task) {
		return f, fmt.Errorf("--task: unsupported task %q (supported: %s)", f.task, strings.Join(supportedTasks, ", "))
	}
	return f, nil
}

// warmupFlag is --warmup: auto, true or false; a bare --warmup is true.
type warmupFlag struct{ m *WarmupMode }

func (f *warmupFlag) String() string {
	if f.m == nil {
		return string(WarmupAuto)
	}
	return string(*f.m)
}

func (f *warmupFlag) Set(v string) (err error) {
	*f.m, err = ParseWarmupMode(v)
	return err
}

func (f *warmupFlag) IsBoolFlag() bool { return true }

// RunONNX runs `ember worker onnx [flags]` until ctx ends or SIGTERM/SIGINT
// arrives, and returns the exit code. It opens the port first, so /phases
// and /live answer while the runtime and model load; /health turns 200 when
// the model is warm. A failed load exits 1 (outside pool mode), so the
// process driver reports the start failure with this log's last line.
// ortTelemetryEnv is ONNX Runtime's telemetry opt-out.
const ortTelemetryEnv = "ORT_DISABLE_TELEMETRY"

func RunONNX(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	f, err := parseFlags(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ember worker onnx:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("worker", "onnx", "task", f.task)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cache, err := models.DefaultCacheDir(f.cacheDir)
	if err != nil {
		log.Error("cache dir", "err", err)
		return 1
	}
	opts := ocr.Options{Classify: f.classify, Threads: f.threads, LoadMode: f.loadMode}
	if f.optCache {
		opts.OptimizedDir = filepath.Join(cache, "optimized")
	}
	load := func(ctx context.Context, task, dir string, topts TaskOptions) (Model, error) {
		dir, err := models.Pull(ctx, dir, cache, stderr)
		if err != nil {
			return nil, err
		}
		if task == TaskClassification || task == TaskEmbeddings {
			return textmodel.Load(dir, topts.TextOptions(task, f.threads))
		}
		return ocr.Load(dir, opts)
	}
	srv := NewServer(log, load, Config{MaxBytes: f.maxBytes, MaxPixels: f.maxPixels, Warmup: f.warmup}, start)
	defer srv.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort(f.host, strconv.Itoa(f.port)))
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	srv.Phase(PhaseListening, time.Now())
	fmt.Fprintf(stdout, "ember worker onnx listening on http://%s\n", ln.Addr())
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	code := func() int {
		lib, err := (&models.Client{}).RuntimeLibrary(ctx, cache, f.ortLib, stderr)
		if err != nil {
			log.Error("onnx runtime", "err", err)
			return 1
		}
		// ONNX Runtime 1.30 otherwise keeps a device id and a telemetry
		// queue in ~/.cache/Microsoft/DeveloperTools/.onnxruntime, outside
		// Ember's dirs; its own opt-out must be set before it loads.
		if _, set := os.LookupEnv(ortTelemetryEnv); !set {
			_ = os.Setenv(ortTelemetryEnv, "1")
		}
		if err := ocr.InitRuntime(lib); err != nil {
			log.Error("onnx runtime", "err", err)
			return 1
		}
		srv.RuntimeLoaded(time.Now())
		log.Info("onnx runtime loaded", "lib", lib, "version", ocr.RuntimeVersion(), "pool", f.pool)
		if f.pool {
			return -1
		}
		if err := srv.Load(ctx, f.task, f.modelDir, f.options); err != nil {
			log.Error("load model", "model", f.modelDir, "err", err)
			return 1
		}
		return -1
	}()
	if code < 0 {
		select {
		case <-ctx.Done():
			code = 0
		case err := <-serveErr:
			log.Error("serve", "err", err)
			code = 1
		}
	}
	// Drain: finish in-flight predictions, bounded, then release the model.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("serve", "err", err)
	}
	return code
}
