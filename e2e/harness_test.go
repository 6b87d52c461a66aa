// Package e2e runs Ember end to end: the real ember binary serving on a
// loopback port, real instance processes (examples/sim), real HTTP.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	poll "github.com/ember-run/ember/internal/eventually"
)

// bins holds the binaries built once for the whole package.
var bins struct {
	ember, sim string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ember-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Servers and tests share one model cache for this run (not the
	// user's, where a warm copy could hide a broken download), unless
	// EMBER_CACHE_DIR names one to reuse.
	if os.Getenv("EMBER_CACHE_DIR") == "" {
		os.Setenv("EMBER_CACHE_DIR", filepath.Join(dir, "cache"))
	}
	bins.ember = filepath.Join(dir, "ember")
	bins.sim = filepath.Join(dir, "sim")
	for _, b := range []struct{ out, pkg string }{{bins.ember, "../cmd/ember"}, {bins.sim, "../examples/sim"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running `ember serve`.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	dataDir string
	url     string
	c       *client.Client
	logs    *syncBuffer
	done    chan struct{}
	exitErr error
	key     string // the admin key the server wrote
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer starts ember serve on dataDir ("" for a fresh one) and waits
// until it answers /readyz.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, dataDir, nil, extra...)
}

// startServerEnv is startServer with env added to the server's
// environment (the test's own is inherited too).
func startServerEnv(t *testing.T, dataDir string, env []string, extra ...string) *server {
	t.Helper()
	return startRole(t, "serve", dataDir, env, extra...)
}

// startRole is startServerEnv for a subcommand that serves the API:
// serve or gateway.
func startRole(t *testing.T, role, dataDir string, env []string, extra ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{t: t, addr: freeAddr(t), dataDir: dataDir, logs: &syncBuffer{}, done: make(chan struct{})}
	s.url = "http://" + s.addr
	args := append([]string{role, "--addr", s.addr, "--data-dir", dataDir, "--tick", "100ms", "--grace", "10s", "--log-level", "debug"}, extra...)
	s.cmd = exec.Command(bins.ember, args...)
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	// With --admin-key-file the server writes no admin.key: the test
	// holds the key in that file.
	keyFile := ""
	for i, a := range extra {
		if a == "--admin-key-file" && i+1 < len(extra) {
			keyFile = extra[i+1]
		}
	}
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "EMBER_ADMIN_KEY_FILE="); ok && keyFile == "" {
			keyFile = v
		}
	}
	if keyFile != "" {
		if b, err := os.ReadFile(keyFile); err == nil {
			s.key = strings.TrimSpace(string(b))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.key == "" {
			if b, err := os.ReadFile(filepath.Join(dataDir, "admin.key")); err == nil {
				s.key = strings.TrimSpace(string(b))
			}
		}
		req, _ := http.NewRequest("GET", s.url+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.key)
		resp, err := http.DefaultClient.Do(req)
		if err == nil && s.key != "" {
			if resp.StatusCode == 200 {
				resp.Body.Close()
				s.c = client.New(s.url, s.key)
				s.c.HTTP = &http.Client{}
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("server exited early: %v\n%s", s.exitErr, s.logs.String())
		case <-time.After(5 * time.Millisecond): // polling readiness with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready:\n%s", s.logs.String())
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

// deploy deploys a sim function from a YAML spec fragment.
func (s *server) deploy(yaml string) api.Function {
	s.t.Helper()
	res, err := s.c.Deploy(context.Background(), []byte(yaml))
	if err != nil {
		s.t.Fatalf("deploy: %v", err)
	}
	return res.Function
}

func simSpec(name, scaling string, extra ...string) string {
	return fmt.Sprintf("name: %s\ncommand: [%q]\nscaling: %s\n%s", name, bins.sim, scaling, strings.Join(extra, "\n"))
}

type result struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
}

func (s *server) call(method, path, body string) result {
	s.t.Helper()
	return s.callAs(s.key, method, path, body)
}

func (s *server) instances(name string) []api.Instance {
	s.t.Helper()
	ins, err := s.c.Instances(context.Background(), name)
	if err != nil {
		s.t.Fatalf("instances: %v", err)
	}
	return ins
}

// eventually polls cond, an HTTP call or a /proc read, every 20 ms until
// it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.True(t, d, 20*time.Millisecond, what, cond)
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces, so cut at ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		var state string
		var ppid int
		if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err == nil && ppid == pid && state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// descendants returns every process below pid, depth first.
func descendants(pid int) []int {
	var out []int
	for _, c := range children(pid) {
		out = append(out, c)
		out = append(out, descendants(c)...)
	}
	return out
}

// comm is the command name of pid ("" once it is gone).
func comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

// sseLines reads SSE data lines from r, sending each with its arrival time.
func sseLines(r io.Reader) <-chan [2]any {
	ch := make(chan [2]any)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data:") {
				ch <- [2]any{strings.TrimSpace(strings.TrimPrefix(line, "data:")), time.Now()}
			}
		}
	}()
	return ch
}

func osWriteFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// get is an authenticated GET whose body the caller reads.
func (s *server) get(path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	return http.DefaultClient.Do(req)
}

// builtOnce is what a test binary builds once and its tests share (an
// image): the first caller builds, every caller gets the name or fails
// with the build's error.
type builtOnce struct {
	once sync.Once
	name string
	err  error
}

func (b *builtOnce) get(t *testing.T, what string, build func() (string, error)) string {
	t.Helper()
	b.once.Do(func() { b.name, b.err = build() })
	if b.err != nil {
		t.Fatalf("%s: %v", what, b.err)
	}
	return b.name
}
