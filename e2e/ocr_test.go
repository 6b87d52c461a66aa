package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// TestOCRFunction deploys the shipped OCR example on a real server and reads
// a rendered image through /v1/run, cold then warm, and checks that bad
// input gets a 400 and leaves the instance up.
func TestOCRFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real OCR model")
	}
	ocrtest.Assets(t) // fetch once into the shared cache
	img := ocrtest.Hello(t, "png")
	s := startServer(t, "", "--cache-dir", ocrtest.CacheDir(t), "--onnx-pool", "0")
	example, err := os.ReadFile("../examples/ocr/ocr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.deploy(string(example))

	post := func(body []byte, contentType string) result {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+"/v1/run/ocr", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+s.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return result{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
	}
	var out struct {
		Text  string `json:"text"`
		Lines []struct {
			Text string    `json:"text"`
			Box  [4][2]int `json:"box"`
		} `json:"lines"`
	}
	cold := post(img, "image/png")
	if cold.status != 200 || cold.header.Get(api.HeaderColdStart) != "true" {
		t.Fatalf("cold OCR: %d cold=%q %s", cold.status, cold.header.Get(api.HeaderColdStart), cold.body)
	}
	decode(t, cold.body, &out)
	if out.Text != "Hello Ember 2026" || len(out.Lines) != 1 {
		t.Errorf("recognised %q (%d lines), want \"Hello Ember 2026\"", out.Text, len(out.Lines))
	}
	st := cold.header.Get(api.HeaderServerTiming)
	for _, ph := range []string{"spawned", "runtime_loaded", "sessions_created", "ready"} {
		if !strings.Contains(st, ph+";dur=") {
			t.Errorf("Server-Timing %q lacks the %s phase", st, ph)
		}
	}
	// OCR is ready without a warm-up inference (worker --warmup auto).
	if strings.Contains(st, "warmup_done;") {
		t.Errorf("Server-Timing %q has a warmup_done phase; OCR should skip the warm-up", st)
	}
	id := cold.header.Get(api.HeaderInstance)

	for _, tt := range []struct {
		name, ct string
		body     []byte
		want     string
	}{
		{"empty body", "image/png", nil, "missing image"},
		{"not an image", "image/png", []byte("hello, not a picture"), "not an image"},
		{"bad json", "application/json", []byte(`{"image": 5}`), "image"},
	} {
		r := post(tt.body, tt.ct)
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(r.body, &e)
		if r.status != 400 || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", tt.name, r.status, r.body, tt.want)
		}
	}
	out2, err := exec.Command(bins.ember, "--server", s.url, "--key-file", s.dataDir+"/admin.key", "describe", "ocr").CombinedOutput()
	if err != nil || !strings.Contains(string(out2), "model loaded (read + sessions)") || !strings.Contains(string(out2), "runtime + dependencies ready") {
		t.Errorf("describe ocr lacks the measured cold-start table: %v\n%s", err, out2)
	}
	warm := post(img, "image/png")
	if warm.status != 200 || warm.header.Get(api.HeaderColdStart) != "" || warm.header.Get(api.HeaderInstance) != id {
		t.Errorf("warm OCR after bad input: %d cold=%q on %s, want 200 warm on %s", warm.status, warm.header.Get(api.HeaderColdStart), warm.header.Get(api.HeaderInstance), id)
	}
}
