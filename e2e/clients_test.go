package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// clientsServerArgs are the extra `ember serve` flags of the official
// clients test. Its webhook receiver listens on 127.0.0.1, and loopback
// webhooks are refused by default.
var clientsServerArgs = []string{"--webhook-allow", "127.0.0.1/32"}

// deployClientFunctions deploys the functions e2e/clients/clients.mjs uses.
func deployClientFunctions(s *server) {
	s.deploy(simSpec("e2e/sim", "{min: 0, max: 2, concurrency: 8}"))
	s.deploy(simSpec("e2e/stream", "{min: 0, max: 1, concurrency: 8}", "predict_path: /stream"))
	s.deploy(simSpec("e2e/plain", "{min: 0, max: 1, concurrency: 8}", "env: {SIM_JSON_TYPE: text/plain}"))
}

// TestOfficialClients runs the official replicate and openai npm clients,
// unchanged, against a real server (e2e/clients/clients.mjs).
func TestOfficialClients(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the official JS clients cannot run (.ci/run installs nodejs and npm)")
	}
	dir, err := filepath.Abs("clients")
	if err != nil {
		t.Fatal(err)
	}
	installClients(t, dir)

	s := startServer(t, "", clientsServerArgs...)
	deployClientFunctions(s)
	invoke := s.createKey(api.KeyCreate{Name: "clients", Scope: "invoke", Functions: []string{"e2e/sim"}})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "clients.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EMBER_URL="+s.url, "EMBER_KEY="+s.key, "EMBER_INVOKE_KEY="+invoke)
	out, err := cmd.CombinedOutput()
	t.Logf("node clients.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the official clients failed against ember serve: %v (output above)", err)
	}
}

// installClients runs `npm ci` in dir unless the pinned clients are there.
func installClients(t *testing.T, dir string) {
	t.Helper()
	have := true
	for _, pkg := range []string{"openai", "replicate"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			have = false
		}
	}
	if have {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH and e2e/clients/node_modules is missing: cannot install the official JS clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// TestStreamToken checks that a prediction's urls.stream works without a
// key, as Replicate's capability URLs do, and grants nothing else.
func TestStreamToken(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("e2e/stream", "{min: 0, max: 1, concurrency: 8}", "predict_path: /stream"))
	invoke := s.createKey(api.KeyCreate{Name: "streamer", Scope: "invoke", Functions: []string{"e2e/stream"}})

	create := func() api.Prediction {
		t.Helper()
		r := s.callAs(invoke, "POST", "/v1/predictions", `{"model":"e2e/stream","input":{}}`)
		if r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		var p api.Prediction
		decode(t, r.body, &p)
		return p
	}
	p1, p2 := create(), create()
	u, err := url.Parse(p1.URLs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.Query().Get("token")
	if tok == "" || u.Path != "/v1/predictions/"+p1.ID+"/stream" {
		t.Fatalf("urls.stream = %q; want /v1/predictions/%s/stream?token=…", p1.URLs.Stream, p1.ID)
	}

	// The stream URL alone, as the replicate client fetches it.
	resp, err := http.Get(p1.URLs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		strings.Count(string(body), "event: output") != 5 || !strings.Contains(string(body), "event: done") {
		t.Fatalf("GET urls.stream without a key = %d %q:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	tampered := []byte(tok)
	tampered[len(tampered)-2] ^= 1
	esc := url.QueryEscape
	tests := []struct {
		name, method, path string
	}{
		{"no token", "GET", "/v1/predictions/" + p1.ID + "/stream"},
		{"tampered token", "GET", "/v1/predictions/" + p1.ID + "/stream?token=" + esc(string(tampered))},
		{"another prediction's token", "GET", "/v1/predictions/" + p2.ID + "/stream?token=" + esc(tok)},
		{"expiry moved", "GET", "/v1/predictions/" + p1.ID + "/stream?token=" + esc("9"+tok)},
		{"garbage", "GET", "/v1/predictions/" + p1.ID + "/stream?token=" + esc(strings.Repeat("x", 4096))},
		{"token on get", "GET", "/v1/predictions/" + p1.ID + "?token=" + esc(tok)},
		{"token on cancel", "POST", "/v1/predictions/" + p1.ID + "/cancel?token=" + esc(tok)},
		{"token on list", "GET", "/v1/predictions?token=" + esc(tok)},
		{"token on another path", "GET", "/v1/predictions/" + p1.ID + "/stream/x?token=" + esc(tok)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.callAs("", tc.method, tc.path, "")
			// A path no route serves is 404 to anyone: a token opens
			// nothing there either.
			want := http.StatusUnauthorized
			if strings.HasSuffix(tc.name, "another path") {
				want = http.StatusNotFound
			}
			if r.status != want {
				t.Errorf("%s %s without a key = %d %s; want %d", tc.method, tc.path, r.status, r.body, want)
			}
		})
	}

	// A key still reads the stream the usual way, token or not.
	req, _ := http.NewRequest("GET", s.url+"/v1/predictions/"+p2.ID+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+invoke)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "event: done" {
		if sc.Text() == "event: output" {
			n++
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || n != 5 {
		t.Errorf("GET stream with the key = %d, %d output events; want 200 and 5", resp.StatusCode, n)
	}
}
