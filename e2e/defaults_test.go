package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// A job's caller chooses its webhook URL, so by default the server refuses
// to POST to loopback (another function's instance port, the server's own
// API) and says why at submit; an operator allow-list lets a local receiver
// through.
func TestWebhookLoopbackRefusedByDefault(t *testing.T) {
	var delivered atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	s := startServer(t, "")
	s.deploy(simSpec("hooked", "{min: 0, max: 1}"))
	res := s.call("POST", "/v1/predictions", fmt.Sprintf(`{"version": "hooked", "input": {}, "webhook": %q}`, hook.URL))
	if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), "loopback") ||
		!strings.Contains(string(res.body), "--webhook-allow") {
		t.Errorf("webhook to %s on a default server: %d %s, want 400 naming loopback and --webhook-allow", hook.URL, res.status, res.body)
	}

	allowed := startServer(t, "", "--webhook-allow", "127.0.0.1/32")
	allowed.deploy(simSpec("hooked", "{min: 0, max: 1}"))
	p, err := allowed.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "hooked", Input: json.RawMessage(`{}`),
		Webhook: hook.URL, WebhookEventsFilter: []string{"completed"}}, client.PredictionOptions{})
	if err != nil {
		t.Fatalf("webhook to %s with --webhook-allow 127.0.0.1/32: %v", hook.URL, err)
	}
	waitJob(t, allowed, p.ID)
	eventually(t, 30*time.Second, "the completed webhook to the allowed receiver", func() bool { return delivered.Load() == 1 })
}

// Everything under the data dir (database and its WAL, keys, instance logs,
// the lock) is readable by the server's user only, whatever the umask.
func TestStateIsPrivate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dataDir, 0o755); err != nil { // an existing, looser dir is tightened
		t.Fatal(err)
	}
	s := startServer(t, dataDir)
	s.deploy(simSpec("private", "{min: 0, max: 1}"))
	if r := s.call("POST", "/v1/run/private/predict", `{"echo": 1}`); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	if !strings.Contains(s.logs.String(), "tightened") {
		t.Errorf("no warning about the data dir's loose permissions in the log")
	}
	var files int
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			if mode.Perm() != 0o700 {
				t.Errorf("dir %s is %v, want drwx------", path, mode)
			}
		case mode.Perm()&0o077 != 0:
			t.Errorf("%s is %v, want no group/other access", path, mode)
		default:
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ember.db", "ember.db-wal", "admin.key"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("expected %s in the data dir: %v", name, err)
		}
	}
	if files < 4 {
		t.Errorf("walked %d private files, want at least the database, WAL, admin key and an instance log", files)
	}
}

// A second server on a data dir in use refuses at once, naming the PID that
// holds it, and leaves the first one alone.
func TestSecondServerOnDataDirRefuses(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("locked", "{min: 1, max: 1}"))
	eventually(t, 30*time.Second, "the min instance", func() bool { return len(s.instances("locked")) == 1 })
	p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "locked", Input: json.RawMessage(`{"sleep_ms": 3000}`)}, client.PredictionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the job running", func() bool {
		got, err := s.c.Prediction(context.Background(), p.ID, 0)
		return err == nil && got.Status == api.PredictionProcessing
	})
	simsBefore := countSims(s.cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bins.ember, "serve", "--addr", freeAddr(t), "--data-dir", s.dataDir)
	out, err := second.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("second server: %v (ctx %v), want a non-zero exit at once\n%s", err, ctx.Err(), out)
	}
	want := fmt.Sprintf("pid %d", s.cmd.Process.Pid)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), s.dataDir) {
		t.Errorf("second server said %q, want the data dir and %q", out, want)
	}

	final := waitJob(t, s, p.ID)
	if final.Status != api.PredictionSucceeded {
		t.Errorf("first server's running job ended %s (%v), want succeeded", final.Status, final.Error)
	}
	if got := len(s.instances("locked")); got != 1 {
		t.Errorf("first server has %d instances, want 1", got)
	}
	if after := countSims(s.cmd.Process.Pid); after != simsBefore {
		t.Errorf("%d sim processes under the first server, %d before the second start", after, simsBefore)
	}
	if all := allSims(); all != simsBefore {
		t.Errorf("%d sim processes on the machine under this test's binary, want %d (no duplicate min instances)", all, simsBefore)
	}
}

func countSims(pid int) int {
	n := 0
	for _, p := range descendants(pid) {
		if comm(p) == "sim" {
			n++
		}
	}
	return n
}

// allSims counts running processes of this test's sim binary.
func allSims() int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bins.sim {
			n++
		}
	}
	return n
}

// A lost admin.key is warned about at start, and `ember keys reset-admin`
// (refused while a server holds the data dir) writes a working new one.
func TestAdminKeyRecovery(t *testing.T) {
	s := startServer(t, "")
	reset := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bins.ember, "keys", "reset-admin", "--data-dir", s.dataDir).CombinedOutput()
		return string(out), err
	}
	if out, err := reset(); err == nil || !strings.Contains(out, fmt.Sprintf("in use by ember serve (pid %d)", s.cmd.Process.Pid)) {
		t.Errorf("reset-admin beside a running server: %v %q, want refused naming pid %d", err, out, s.cmd.Process.Pid)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	keyFile := filepath.Join(s.dataDir, "admin.key")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}

	// Started without its key file, the server says so and how to recover.
	logs := &syncBuffer{}
	cmd := exec.Command(bins.ember, "serve", "--addr", freeAddr(t), "--data-dir", s.dataDir)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a warning about the missing admin.key", func() bool {
		l := logs.String()
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "admin.key is missing") && strings.Contains(l, "ember keys reset-admin --data-dir")
	})
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	out, err := reset()
	if err != nil || !strings.Contains(out, keyFile) {
		t.Fatalf("reset-admin with the server stopped: %v %q", err, out)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new admin.key: %v, %v; want mode 0600", fi, err)
	}
	s2 := startServer(t, s.dataDir) // authenticates with the new file's key
	if _, err := s2.c.Keys(context.Background()); err != nil {
		t.Errorf("listing keys (admin only) with the new admin key: %v", err)
	}
}
