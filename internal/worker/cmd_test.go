package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// TestMain lets the test binary be the worker process: tests re-exec it
// with EMBER_TEST_WORKER=1, as `ember worker onnx` would be exec'd.
func TestMain(m *testing.M) {
	if os.Getenv("EMBER_TEST_WORKER") == "1" {
		os.Exit(RunONNX(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(ocrtest.Main(m))
}

// workerProc is a worker started as a real process.
type workerProc struct {
	cmd  *exec.Cmd
	url  string
	logs *syncWriter
	done chan error
}

// startWorker execs the worker and returns once it has printed its address.
func startWorker(t testing.TB, args ...string) *workerProc {
	t.Helper()
	lib, _ := ocrtest.Assets(t)
	cmd := exec.Command(os.Args[0], append([]string{"--port", "0", "--ort-lib", lib}, args...)...)
	cmd.Env = append(os.Environ(), "EMBER_TEST_WORKER=1", "EMBER_CACHE_DIR="+ocrtest.CacheDir(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &strings.Builder{}}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{cmd: cmd, logs: logs, done: make(chan error, 1)}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, addr, ok := strings.Cut(sc.Text(), "listening on "); ok {
			w.url = addr
			break
		}
	}
	go func() { io.Copy(io.Discard, stdout); w.done <- cmd.Wait() }()
	t.Cleanup(func() { w.stop(t) })
	if w.url == "" {
		t.Fatalf("worker printed no address; logs:\n%s", logs.String())
	}
	return w
}

func (w *workerProc) stop(t testing.TB) error {
	if w.cmd.ProcessState != nil {
		return nil
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Kill()
		t.Errorf("worker ignored SIGTERM; logs:\n%s", w.logs.String())
		return <-w.done
	}
}

// waitStatus polls path until it answers want, as the process driver's
// readiness probe does, and fails after a deadline or if the worker exits.
func (w *workerProc) waitStatus(t testing.TB, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	backoff := time.Millisecond
	for {
		resp, err := http.Get(w.url + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("worker exited (%v) before %s answered %d; logs:\n%s", err, path, want, w.logs.String())
		case <-time.After(backoff):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d; logs:\n%s", path, want, w.logs.String())
		}
		backoff = min(backoff*2, 20*time.Millisecond)
	}
}

func (w *workerProc) phases(t testing.TB) map[string]int64 {
	t.Helper()
	resp, err := http.Get(w.url + "/phases")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ps []PhaseAt
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, p := range ps {
		m[p.Name] = p.At
	}
	return m
}

// syncWriter serialises writes from the exec package's copier goroutine
// with reads by the test.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestWorkerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real worker")
	}
	tests := []struct {
		name   string
		args   []string
		phases []string
		absent string // a phase that must not be there
	}{
		// OCR skips the warm-up by default (WarmupAuto): no warmup_done.
		{"direct npm ref", []string{"--model-dir", ocrtest.ModelRef}, []string{"process_start", "listening", "runtime_loaded", "sessions_created"}, "warmup_done"},
		{"direct, --warmup", []string{"--model-dir", ocrtest.ModelRef, "--warmup"}, []string{"process_start", "listening", "runtime_loaded", "sessions_created", "warmup_done"}, ""},
		{"pool then load", []string{"--pool", "--load", "read", "--warmup=true"}, []string{"process_start", "listening", "runtime_loaded", "load_requested", "sessions_created", "warmup_done"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWorker(t, tt.args...)
			if tt.args[0] == "--pool" {
				w.waitStatus(t, "/live", http.StatusOK)
				_, dir := ocrtest.Assets(t)
				resp, err := http.Post(w.url+"/load", "application/json", strings.NewReader(fmt.Sprintf(`{"task":"ocr","model_dir":%q}`, dir)))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("POST /load = %d; logs:\n%s", resp.StatusCode, w.logs.String())
				}
			}
			w.waitStatus(t, "/health", http.StatusOK)
			resp, err := http.Post(w.url+"/predict", "image/png", strings.NewReader(string(ocrtest.Hello(t, "png"))))
			if err != nil {
				t.Fatal(err)
			}
			var res struct{ Text string }
			json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if res.Text != "Hello Ember 2026" {
				t.Errorf("text = %q, want %q", res.Text, "Hello Ember 2026")
			}
			ph := w.phases(t)
			var prev int64
			for _, name := range tt.phases {
				at, ok := ph[name]
				if !ok {
					t.Errorf("phase %s missing from %v", name, ph)
					continue
				}
				if at < prev {
					t.Errorf("phase %s (%d) precedes the one before it (%d)", name, at, prev)
				}
				prev = at
			}
			if _, ok := ph[tt.absent]; tt.absent != "" && ok {
				t.Errorf("phase %s present in %v, want it absent", tt.absent, ph)
			}
			if err := w.stop(t); err != nil {
				t.Errorf("worker exit after SIGTERM: %v; logs:\n%s", err, w.logs.String())
			}
		})
	}
}

func TestWarmupFlag(t *testing.T) {
	tests := []struct {
		args []string
		want WarmupMode
	}{
		{nil, WarmupAuto},
		{[]string{"--warmup"}, WarmupOn},
		{[]string{"--warmup=true"}, WarmupOn},
		{[]string{"--warmup=false"}, WarmupOff},
		{[]string{"--warmup=auto"}, WarmupAuto},
	}
	for _, tt := range tests {
		f, err := parseFlags(append([]string{"--pool"}, tt.args...), func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		if f.warmup != tt.want {
			t.Errorf("%v: warm-up mode %q, want %q", tt.args, f.warmup, tt.want)
		}
	}
}

func TestWarmupRuns(t *testing.T) {
	tests := []struct {
		mode WarmupMode
		task string
		want bool
	}{
		{WarmupAuto, "ocr", false},
		{WarmupAuto, TaskClassification, true},
		{WarmupAuto, TaskEmbeddings, true},
		{WarmupOn, "ocr", true},
		{WarmupOff, TaskEmbeddings, false},
	}
	for _, tt := range tests {
		if got := tt.mode.runs(tt.task); got != tt.want {
			t.Errorf("%s.runs(%s) = %v, want %v", tt.mode, tt.task, got, tt.want)
		}
	}
}

func TestWorkerBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no model", nil, "--model-dir is required"},
		{"bad task", []string{"--pool", "--task", "tts"}, `unsupported task "tts"`},
		{"bad load mode", []string{"--pool", "--load", "dma"}, "--load: want mmap or read"},
		{"bad warm-up mode", []string{"--pool", "--warmup=sometimes"}, `warm-up mode "sometimes": want auto, true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := RunONNX(context.Background(), tt.args, io.Discard, &stderr)
			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to mention %q", stderr.String(), tt.want)
			}
		})
	}
}
