package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

var cogImage builtOnce

// cogImage builds (once per test binary, once per content on the engine)
// the Cog-protocol fixture of examples/cog as a FROM scratch image.
func (e *engine) cogImage(t *testing.T) string {
	t.Helper()
	return cogImage.get(t, "build cog image", buildCogImage)
}

func buildCogImage() (string, error) {
	dir, err := os.MkdirTemp("", "ember-cog-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "cog-fixture"), "../examples/cog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("static cog fixture: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cog-fixture"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	ref := "localhost/ember-cog:" + hex.EncodeToString(sum[:6])
	cliName := "podman"
	if _, err := exec.LookPath(cliName); err != nil {
		cliName = "docker"
	}
	if exec.Command(cliName, "image", "inspect", ref).Run() == nil {
		return ref, nil
	}
	cf, err := os.ReadFile("../examples/cog/Containerfile")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), cf, 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command(cliName, "build", "-q", "-t", ref, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s build: %v\n%s", cliName, err, out)
	}
	return ref, nil
}

func cogSpec(name, image string, extra ...string) string {
	return fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nprotocol: cog\nscaling: {min: 0, max: 1}\n%s", name, image, strings.Join(extra, "\n"))
}

// TestCogRun: a Cog image answers through /v1/run: its output as the
// body, inputs checked against its /openapi.json schema before the
// prediction is sent (422 naming the field), a failed prediction as an
// error with Cog's text, list outputs as SSE events on request.
func TestCogRun(t *testing.T) {
	e := needEngine(t)
	image := e.cogImage(t)
	for _, network := range []string{"bridge", "host"} {
		t.Run(network, func(t *testing.T) {
			s := containerServer(t, e, "", "--container-network", network)
			name := uniqueName("cog-" + network)
			fn := s.deploy(cogSpec(name, image))
			var sp struct {
				Port    int `json:"port"`
				Scaling struct {
					Concurrency int `json:"concurrency"`
				} `json:"scaling"`
			}
			decode(t, fn.Spec, &sp)
			if sp.Port != 5000 || sp.Scaling.Concurrency != 1 {
				t.Errorf("deployed port, concurrency = %d, %d; want Cog's 5000 and 1", sp.Port, sp.Scaling.Concurrency)
			}

			res := s.call("POST", "/v1/run/"+name, `{"prompt":"hi","repeat":2,"style":"shout"}`)
			if res.status != 200 || string(res.body) != `["HI#1 ","HI#2 "]` {
				t.Fatalf("run = %d %s, want 200 [\"HI#1 \",\"HI#2 \"]", res.status, res.body)
			}
			if res.header.Get(api.HeaderColdStart) != "true" || res.header.Get("Ember-Cog-Predict-Time") == "" {
				t.Errorf("headers %v: want a cold start and Ember-Cog-Predict-Time", res.header)
			}

			tests := []struct {
				name, body string
				status     int
				want       string
			}{
				{"missing required", `{"repeat":2}`, 422, `input.prompt: required`},
				{"wrong type", `{"prompt":"x","repeat":"two"}`, 422, `input.repeat: must be an integer (got string \"two\")`},
				{"unknown field", `{"prompt":"x","temperature":0.7}`, 422, `input.temperature: unknown field (this model takes prompt, repeat, style, fail, as_file, delay_ms)`},
				{"out of range", `{"prompt":"x","repeat":11}`, 422, `input.repeat: must be ≤ 10`},
				{"choice", `{"prompt":"x","style":"whisper"}`, 422, `input.style: must be one of \"plain\", \"shout\"`},
				{"failed prediction", `{"prompt":"no","fail":true}`, 500, `prediction failed: ValueError: the model refused the prompt \"no\"`},
			}
			for _, tc := range tests {
				res := s.call("POST", "/v1/run/"+name, tc.body)
				if res.status != tc.status || !strings.Contains(string(res.body), tc.want) {
					t.Errorf("%s: run %s = %d %s; want %d containing %s", tc.name, tc.body, res.status, res.body, tc.status, tc.want)
				}
			}

			// A ConcatenateIterator-style list comes as one SSE event per item.
			req, _ := http.NewRequest("POST", s.url+"/v1/run/"+name, strings.NewReader(`{"prompt":"s","repeat":3}`))
			req.Header.Set("Authorization", "Bearer "+s.key)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "event: output\ndata: \"s#1 \"\n\nevent: output\ndata: \"s#2 \"\n\nevent: output\ndata: \"s#3 \"\n\nevent: result\ndata: [\"s#1 \",\"s#2 \",\"s#3 \"]\n\nevent: done"
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Errorf("stream = %d:\n%s\nwant it to contain:\n%s", resp.StatusCode, body, want)
			}

			// File outputs come back as links Ember serves, not inline.
			res = s.call("POST", "/v1/run/"+name, `{"prompt":"f","repeat":2,"as_file":true}`)
			var links []string
			if res.status != 200 || json.Unmarshal(res.body, &links) != nil || len(links) != 2 {
				t.Fatalf("file output = %d %s, want two links", res.status, res.body)
			}
			for i, l := range links {
				if !strings.HasPrefix(l, s.url+"/v1/files/") {
					t.Fatalf("output[%d] = %q, want a link under %s/v1/files/", i, l, s.url)
				}
				resp, err := http.Get(l) // no key: the link is the capability
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("f#%d ", i+1); resp.StatusCode != 200 || string(b) != want || resp.Header.Get("Content-Type") != "text/plain" {
					t.Errorf("GET %s = %d %q %q, want 200 text/plain %q", l, resp.StatusCode, resp.Header.Get("Content-Type"), b, want)
				}
			}

			// describe shows the schema from the image's /openapi.json.
			f, err := s.c.Function(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			var schema struct {
				Required   []string `json:"required"`
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			}
			decode(t, f.InputSchema, &schema)
			if fmt.Sprint(schema.Required) != "[prompt]" || fmt.Sprint(schema.Properties["style"].Enum) != "[plain shout]" || len(schema.Properties) != 6 {
				t.Errorf("input_schema = %s, want the fixture's six inputs, prompt required, style's choices inlined", f.InputSchema)
			}
			out, err := exec.Command(bins.ember, "--server", s.url, "--key-file", s.dataDir+"/admin.key", "describe", name).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Inputs (from the image's schema):") ||
				!regexp.MustCompile(`prompt\s+string\s+required\s+Text to echo`).Match(out) ||
				!regexp.MustCompile(`repeat\s+integer\s+default 1, in \[1, 10\]`).Match(out) {
				t.Errorf("ember describe: %v\n%s\nwant the inputs listed", err, out)
			}

			// Cog's own wire format through Ember: POST /predictions.
			res = s.call("POST", "/v1/run/"+name+"/predictions", `{"input":{"prompt":"n"}}`)
			var p struct {
				Status string   `json:"status"`
				Output []string `json:"output"`
			}
			if res.status != 200 || json.Unmarshal(res.body, &p) != nil || p.Status != "succeeded" || len(p.Output) != 1 {
				t.Errorf("Cog-native call = %d %s, want a succeeded Cog prediction", res.status, res.body)
			}
		})
	}
}

// TestCogSetupFailureReportsCogLogs: a model whose setup() fails is a
// start failure at once (not a start_timeout later), its reason Cog's
// setup logs.
func TestCogSetupFailureReportsCogLogs(t *testing.T) {
	e := needEngine(t)
	image := e.cogImage(t)
	s := containerServer(t, e, "")
	name := uniqueName("cog-setup")
	s.deploy(cogSpec(name, image, `env: {COG_SETUP_FAIL: "weights checksum mismatch (q-81)"}`, "start_timeout: 120s"))
	start := time.Now()
	res := s.call("POST", "/v1/run/"+name, `{"prompt":"x"}`)
	if res.status != 502 && res.status != 503 {
		t.Fatalf("call = %d %s, want 502/503", res.status, res.body)
	}
	for _, want := range []string{"setup failed (SETUP_FAILED)", "RuntimeError: weights checksum mismatch (q-81)", "loading weights"} {
		if !strings.Contains(string(res.body), want) {
			t.Errorf("error body %s lacks %q", res.body, want)
		}
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("the failure took %s: SETUP_FAILED should end the wait, not start_timeout", d)
	}
	eventually(t, 20*time.Second, "failed container removed", func() bool { return len(e.containers(t, name)) == 0 })
}

// TestCogPredictionsWithWebhook: POST /v1/predictions to a Cog function
// runs as an Ember job; its completed webhook carries Cog's output, and a
// failed prediction carries Cog's error text.
func TestCogPredictionsWithWebhook(t *testing.T) {
	e := needEngine(t)
	image := e.cogImage(t)
	got := make(chan api.Prediction, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p api.Prediction
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got <- p
		w.WriteHeader(204)
	}))
	defer recv.Close()
	s := containerServer(t, e, "", "--webhook-allow", "127.0.0.1/32")
	name := uniqueName("cog-jobs")
	s.deploy(cogSpec(name, image))

	for _, tc := range []struct {
		input, status, output, errText string
	}{
		{`{"prompt":"async","repeat":2}`, "succeeded", `["async#1 ","async#2 "]`, ""},
		{`{"prompt":"nope","fail":true}`, "failed", "", `prediction failed: ValueError: the model refused the prompt "nope"`},
	} {
		body := fmt.Sprintf(`{"model":%q,"input":%s,"webhook":%q,"webhook_events_filter":["completed"]}`, name, tc.input, recv.URL+"/hook")
		res := s.call("POST", "/v1/predictions", body)
		if res.status != http.StatusCreated {
			t.Fatalf("create: %d %s", res.status, res.body)
		}
		var created api.Prediction
		decode(t, res.body, &created)
		select {
		case p := <-got:
			if p.ID != created.ID || string(p.Status) != tc.status {
				t.Errorf("webhook for %s: id %s status %s, want %s %s (%+v)", tc.input, p.ID, p.Status, created.ID, tc.status, p)
			}
			if tc.output != "" && string(p.Output) != tc.output {
				t.Errorf("webhook output = %s, want %s", p.Output, tc.output)
			}
			if tc.errText != "" && (p.Error == nil || !strings.Contains(*p.Error, tc.errText)) {
				t.Errorf("webhook error = %v, want %q", deref(p.Error), tc.errText)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("no completed webhook for %s", tc.input)
		}
	}
}

// TestCogJobStreamsAsCogYields: a job runs through Cog's async API, so
// its output grows as the model yields (seen while it still runs), and
// ends as Cog's list.
func TestCogJobStreamsAsCogYields(t *testing.T) {
	e := needEngine(t)
	image := e.cogImage(t)
	for _, network := range []string{"bridge", "host"} {
		t.Run(network, func(t *testing.T) {
			s := containerServer(t, e, "", "--container-network", network)
			name := uniqueName("cog-async-" + network)
			s.deploy(cogSpec(name, image))
			res := s.call("POST", "/v1/predictions", fmt.Sprintf(`{"model":%q,"input":{"prompt":"y","repeat":2,"delay_ms":1500}}`, name))
			if res.status != http.StatusCreated {
				t.Fatalf("create = %d %s", res.status, res.body)
			}
			var p api.Prediction
			decode(t, res.body, &p)
			var last api.Prediction
			eventually(t, 60*time.Second, "the first item while the prediction runs", func() bool {
				decode(t, s.call("GET", "/v1/predictions/"+p.ID, "").body, &last)
				return last.Status == "processing" && string(last.Output) == `"y#1 "`
			})
			eventually(t, 30*time.Second, "the prediction succeeded", func() bool {
				decode(t, s.call("GET", "/v1/predictions/"+p.ID, "").body, &last)
				return last.Status == "succeeded"
			})
			if string(last.Output) != `["y#1 ","y#2 "]` || !strings.Contains(last.Logs, "predicting 2 item(s)") {
				t.Errorf("final output %s, logs %q; want Cog's list and logs", last.Output, last.Logs)
			}
		})
	}
}

// TestCogPredictionsRefuseInvalidInput: once an instance has declared the
// schema, POST /v1/predictions refuses an input that does not fit with 422
// naming the field, before any job exists.
func TestCogPredictionsRefuseInvalidInput(t *testing.T) {
	e := needEngine(t)
	image := e.cogImage(t)
	s := containerServer(t, e, "")
	name := uniqueName("cog-422")
	s.deploy(cogSpec(name, image))
	if res := s.call("POST", "/v1/run/"+name, `{"prompt":"warm"}`); res.status != 200 {
		t.Fatalf("warm-up = %d %s", res.status, res.body)
	}
	res := s.call("POST", "/v1/predictions", fmt.Sprintf(`{"model":%q,"input":{"prompt":3,"colour":"red"}}`, name))
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("create = %d %s, want 422", res.status, res.body)
	}
	for _, want := range []string{`input.colour: unknown field`, `input.prompt: must be a string (got number 3)`} {
		if !strings.Contains(string(res.body), want) {
			t.Errorf("422 body %s lacks %q", res.body, want)
		}
	}
	if list := s.call("GET", "/v1/predictions", ""); !strings.Contains(string(list.body), `"results":[]`) {
		t.Errorf("predictions after a refused create: %s, want none", list.body)
	}
}

// TestCogOfficialReplicateClient runs the official replicate npm client,
// unchanged, against a Cog image served by Ember (e2e/clients/cog.mjs).
func TestCogOfficialReplicateClient(t *testing.T) {
	e := needEngine(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH (.ci/run installs nodejs and npm)")
	}
	dir, err := filepath.Abs("clients")
	if err != nil {
		t.Fatal(err)
	}
	installClients(t, dir)
	image := e.cogImage(t)
	s := containerServer(t, e, "")
	name := "e2e/" + uniqueName("cog")
	s.deploy(cogSpec(name, image))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "cog.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EMBER_URL="+s.url, "EMBER_KEY="+s.key, "EMBER_COG_MODEL="+name)
	out, err := cmd.CombinedOutput()
	t.Logf("node cog.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the official replicate client failed against a Cog function: %v (output above)", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
