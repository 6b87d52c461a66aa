package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// emberIn runs the ember CLI in dir with only env (plus PATH) as its
// environment, so nothing of the test's own environment decides where the
// CLI looks for its server and key.
func emberIn(t *testing.T, dir string, env []string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bins.ember, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// TestCLIFindsItsServer: a newcomer's CLI, run from another directory,
// says where it looked for a key; `ember login` (key on stdin) stores the
// server and key privately, after which bare commands work from anywhere;
// a URL without a scheme works; `ember logout` forgets them.
func TestCLIFindsItsServer(t *testing.T) {
	s := startServer(t, "")
	home := t.TempDir()
	elsewhere := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	hostPort := strings.TrimPrefix(s.url, "http://")

	_, errs, err := emberIn(t, elsewhere, env, "", "--server", hostPort, "ls")
	want := `ember: no API key: looked in --api-key, --key-file, EMBER_API_KEY, EMBER_KEY_FILE, ~/.config/ember/config, ./.ember/admin.key; run "ember login" or pass --api-key`
	if err == nil || strings.TrimSpace(errs) != want {
		t.Fatalf("ls without a key: %v\n  %s\nwant\n  %s", err, strings.TrimSpace(errs), want)
	}

	out, errs, err := emberIn(t, elsewhere, env, s.key+"\n", "login", hostPort)
	if err != nil || !strings.Contains(out, "logged in to "+s.url) {
		t.Fatalf("login: %v %q %q", err, out, errs)
	}
	if strings.Contains(out+errs, s.key) {
		t.Errorf("login echoed the key: %q %q", out, errs)
	}
	cfg := filepath.Join(home, ".config", "ember", "config")
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config %s: %v %v, want mode 0600", cfg, fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(cfg)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("config dir: %v %v, want mode 0700", fi, err)
	}

	s.deploy(simSpec("found", "{max: 1}"))
	if out, errs, err := emberIn(t, elsewhere, env, "", "ls"); err != nil || !strings.Contains(out, "found") {
		t.Errorf("ls after login: %v %q %q", err, out, errs)
	}

	if _, errs, err := emberIn(t, elsewhere, env, "wrong-key\n", "login", hostPort); err == nil || !strings.Contains(errs, "refused this key") {
		t.Errorf("login with a wrong key: %v %q", err, errs)
	}

	if out, _, err := emberIn(t, elsewhere, env, "", "logout"); err != nil || !strings.Contains(out, "logged out") {
		t.Errorf("logout: %v %q", err, out)
	}
	if _, errs, err := emberIn(t, elsewhere, env, "", "--server", hostPort, "ls"); err == nil || !strings.Contains(errs, "no API key") {
		t.Errorf("ls after logout: %v %q", err, errs)
	}
	// The server's data dir, named, is the last place the key is found.
	if out, errs, err := emberIn(t, elsewhere, append(env, "EMBER_SERVER="+hostPort), "", "--data-dir", s.dataDir, "ls"); err != nil || !strings.Contains(out, "found") {
		t.Errorf("ls --data-dir: %v %q %q", err, out, errs)
	}
}

// TestCLISpecErrors: a spec with several mistakes gets every one, by full
// path, in the spec's words; a string command deploys.
func TestCLISpecErrors(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "EMBER_SERVER=" + s.url, "EMBER_KEY_FILE=" + filepath.Join(s.dataDir, "admin.key")}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "name: oops\ncommand: [x]\nscaling:\n  max: four\n  idle-timeout: 30s\ntimeout: soon\n")
	_, errs, err := emberIn(t, dir, env, "", "deploy", bad)
	want := `ember: invalid spec for "oops": unknown field "scaling.idle-timeout" (did you mean "idle_timeout"?); scaling.max: want an integer, got "four"; timeout: want a duration such as "30s" or "2m", got "soon" (HTTP 400 invalid_spec)`
	if err == nil || strings.TrimSpace(errs) != want {
		t.Errorf("deploy bad spec: %v\n  %s\nwant\n  %s", err, strings.TrimSpace(errs), want)
	}
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "name: strcmd\ncommand: "+bins.sim+" --port ${PORT}\nscaling: {max: 1}\n")
	if out, errs, err := emberIn(t, dir, env, "", "deploy", good); err != nil || !strings.Contains(out, "created") {
		t.Fatalf("deploy string command: %v %q %q", err, out, errs)
	}
	if r := s.call("POST", "/v1/run/strcmd/predict", `{"echo":"split"}`); r.status != 200 || !strings.Contains(string(r.body), "split") {
		t.Errorf("call string-command function: %d %s", r.status, r.body)
	}
}

// TestCLISmalls: `ember get $(ember spawn ...)` works (spawn prints only
// the id when stdout is not a terminal), and `ember run` with no name
// prints a usage line.
func TestCLISmalls(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "EMBER_SERVER=" + s.url, "EMBER_KEY_FILE=" + filepath.Join(s.dataDir, "admin.key")}
	s.deploy(simSpec("jobs", "{max: 1}"))
	out, errs, err := emberIn(t, dir, env, "", "spawn", "jobs", "--data", `{"echo":"id only"}`)
	id := strings.TrimSpace(out)
	if err != nil || id == "" || strings.ContainsAny(id, " \t\n") {
		t.Fatalf("spawn printed %q (%v %q), want just the id", out, err, errs)
	}
	if out, errs, err := emberIn(t, dir, env, "", "get", id, "--wait", "60s"); err != nil || !strings.Contains(out, "id only") {
		t.Errorf("get $(spawn): %v %q %q", err, out, errs)
	}

	// logs -f prints lines logged after it started, until stopped.
	follow := exec.Command(bins.ember, "logs", "jobs", "-f", "--interval", "100ms")
	follow.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var fout syncBuffer
	follow.Stdout, follow.Stderr = &fout, &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(fout.String(), "POST /predict 200") < n {
			if time.Now().After(deadline) {
				t.Fatalf("logs -f showed fewer than %d requests within 20s:\n%s", n, fout.String())
			}
			time.Sleep(50 * time.Millisecond) // polling an external process's output, with a deadline
		}
	}
	waitFor(1) // the job's request, from the initial tail
	if r := s.call("POST", "/v1/run/jobs/predict", `{"echo":"followed"}`); r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	waitFor(2) // this call's, followed

	// describe shows the spec as YAML, not JSON.
	if out, errs, err := emberIn(t, dir, env, "", "describe", "jobs"); err != nil || !strings.Contains(out, "\n  scaling:\n") || strings.Contains(out, `"scaling":`) {
		t.Errorf("describe: %v %q\n%s", err, errs, out)
	}

	_, errs, err = emberIn(t, dir, env, "", "run")
	if want := "ember: usage: ember run NAME [flags] (see ember run --help)"; err == nil || strings.TrimSpace(errs) != want {
		t.Errorf("run with no name: %v %q, want %q", err, errs, want)
	}
}
