package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// emberCLI runs the ember CLI against s and returns stdout, stderr and
// the exit error.
func emberCLI(s *server, args ...string) (string, string, error) {
	cmd := exec.Command(bins.ember, append([]string{"--server", s.url, "--key-file", s.dataDir + "/admin.key"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func functionStatus(t *testing.T, s *server, name string) api.FunctionStatus {
	t.Helper()
	fns, err := s.c.Functions(context.Background())
	if err != nil {
		t.Fatalf("GET /v1/functions: %v", err)
	}
	for _, f := range fns {
		if f.Name == name {
			return f.Status
		}
	}
	t.Fatalf("GET /v1/functions has no %q", name)
	return api.FunctionStatus{}
}

// A function whose start fails shows as failing, with the OS reason, in
// GET /v1/functions and in ember ls; a healthy one shows ready and counts
// its requests.
func TestLsShowsStateAndLastError(t *testing.T) {
	s := startServer(t, "")
	work := t.TempDir()
	s.deploy(simSpec("ok", "{min: 0, max: 1, idle_timeout: 30s}"))
	s.deploy(simSpec("broken", "{min: 0, max: 1, idle_timeout: 30s}", "workdir: "+work))
	if st := functionStatus(t, s, "broken"); st.State != api.FunctionScaledToZero {
		t.Errorf("broken before any call: state %q, want %q", st.State, api.FunctionScaledToZero)
	}
	// The workdir goes away after deploy: the start fails with the OS's
	// reason.
	if err := os.Remove(work); err != nil {
		t.Fatal(err)
	}
	if r := s.call("POST", "/v1/run/broken/predict", `{}`); r.status != http.StatusServiceUnavailable {
		t.Fatalf("call broken: %d %s, want 503", r.status, r.body)
	}
	for range 2 {
		if r := s.call("POST", "/v1/run/ok/predict", `{}`); r.status != 200 {
			t.Fatalf("call ok: %d %s", r.status, r.body)
		}
	}
	st := functionStatus(t, s, "broken")
	if st.State != api.FunctionFailing || !strings.Contains(st.LastError, "no such file or directory") {
		t.Errorf("broken: state %q, last_error %q; want failing with the OS reason", st.State, st.LastError)
	}
	ok := functionStatus(t, s, "ok")
	if ok.State != api.FunctionReady || ok.Requests != 2 {
		t.Errorf("ok: state %q, requests %d; want ready, 2", ok.State, ok.Requests)
	}
	out, errs, err := emberCLI(s, "ls")
	if err != nil {
		t.Fatalf("ls: %v %s", err, errs)
	}
	var brokenLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "broken ") {
			brokenLine = l
		}
	}
	if !strings.Contains(out, "STATE") || !strings.Contains(out, "LAST ERROR") ||
		!strings.Contains(brokenLine, "failing") || !strings.Contains(brokenLine, "no such file or directory") {
		t.Errorf("ls does not show broken as failing with its reason:\n%s", out)
	}
}

// Deploy refuses a process function whose command or workdir cannot work,
// naming the field and the OS reason.
func TestDeployChecksCommandAndWorkdir(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	noexec := filepath.Join(dir, "model-server")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	tests := []struct {
		name, spec string
		want       []string
	}{
		{"missing command", "name: m1\ncommand: [/opt/nowhere/model-server]\n",
			[]string{"command", "/opt/nowhere/model-server", "no such file or directory"}},
		{"not on PATH", "name: m2\ncommand: [no-such-model-server-xyz]\n",
			[]string{"command", "no-such-model-server-xyz", "not found in PATH"}},
		{"not executable", "name: m3\ncommand: [" + noexec + "]\n",
			[]string{"command", noexec, "permission denied"}},
		{"missing workdir", "name: m4\ncommand: [" + bins.sim + "]\nworkdir: " + filepath.Join(dir, "gone") + "\n",
			[]string{"workdir", "no such file or directory"}},
		{"workdir is a file", "name: m5\ncommand: [" + bins.sim + "]\nworkdir: " + file + "\n",
			[]string{"workdir", "not a directory"}},
		{"relative to workdir", "name: m6\ncommand: [./model-server]\nworkdir: " + dir + "\n",
			[]string{"command", "./model-server", "permission denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.c.Deploy(context.Background(), []byte(tt.spec))
			var ae *client.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
				t.Fatalf("deploy = %v, want 400", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(ae.Error(), w) {
					t.Errorf("deploy error %q does not say %q", ae.Error(), w)
				}
			}
		})
	}
	if fns, _ := s.c.Functions(context.Background()); len(fns) != 0 {
		t.Errorf("refused deploys left %d functions, first %q", len(fns), fns[0].Name)
	}
}

// ember deploy --wait returns once the new version is ready (starting one
// instance at min 0), and fails with the start error and a non-zero exit
// when it cannot start.
func TestDeployWait(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, simSpec("waity", "{min: 0, max: 2, idle_timeout: 30s}"))
	out, errs, err := emberCLI(s, "deploy", "--wait", "--timeout", "60s", good)
	if err != nil || !strings.Contains(out, "function waity created (version 1)") || !strings.Contains(out, "ready") {
		t.Fatalf("deploy --wait: %v out=%q err=%q", err, out, errs)
	}
	ready := 0
	for _, in := range s.instances("waity") {
		if in.State == api.StateReady && in.Version == 1 {
			ready++
		}
	}
	if ready != 1 {
		t.Errorf("after deploy --wait at min 0: %d ready instances of version 1, want 1", ready)
	}

	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, simSpec("waity", "{min: 0, max: 2, idle_timeout: 30s}", "env: {SIM_FAIL_START: 'model weights missing'}"))
	start := time.Now()
	out, errs, err = emberCLI(s, "deploy", "--wait", "--timeout", "60s", bad)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("deploy --wait of a version that cannot start: err %v, want a non-zero exit\nout=%q err=%q", err, out, errs)
	}
	if !strings.Contains(errs, "model weights missing") || !strings.Contains(out, "updated (version 2)") {
		t.Errorf("deploy --wait failure: out=%q err=%q; want the update and the start error", out, errs)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("deploy --wait took %s to report a failed start", time.Since(start))
	}
	// The old version keeps serving.
	if r := s.call("POST", "/v1/run/waity/predict", `{}`); r.status != 200 {
		t.Errorf("call after a failed rollout: %d %s", r.status, r.body)
	}
	var ro api.Rollout
	r := s.call("GET", "/v1/functions/waity/rollout", "")
	if r.status != 200 || json.Unmarshal(r.body, &ro) != nil || ro.State != api.RolloutFailed || ro.Version != 2 {
		t.Errorf("GET rollout: %d %s, want state failed at version 2", r.status, r.body)
	}
}
