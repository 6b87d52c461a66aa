package e2e

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// TestOCRLoadedPool: an OCR function that scales to zero keeps its worker
// loaded (--onnx-loaded), so its second cold start within the keep-warm
// window takes that worker back: a pool_hit phase, and none of the phases
// that start a worker or create its sessions.
func TestOCRLoadedPool(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real OCR model")
	}
	ocrtest.Assets(t)
	img := ocrtest.Hello(t, "png")
	s := startServer(t, "", "--cache-dir", ocrtest.CacheDir(t), "--onnx-pool", "0", "--onnx-loaded", "1", "--tick", "100ms")
	example, err := os.ReadFile("../examples/ocr/ocr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.deploy(strings.Replace(string(example), "idle_timeout: 60s", "idle_timeout: 1s", 1))
	post := func() result {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+"/v1/run/ocr", bytes.NewReader(img))
		req.Header.Set("Content-Type", "image/png")
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
	phases := func(r result) string { return r.header.Get(api.HeaderServerTiming) }

	first := post()
	if first.status != 200 || first.header.Get(api.HeaderColdStart) != "true" || !strings.Contains(string(first.body), "Hello Ember 2026") {
		t.Fatalf("first OCR: %d cold=%q %s", first.status, first.header.Get(api.HeaderColdStart), first.body)
	}
	if st := phases(first); !strings.Contains(st, "sessions_created;") || strings.Contains(st, "pool_hit;") {
		t.Errorf("first cold start Server-Timing %q: want sessions created, no pool hit", st)
	}
	eventually(t, 30*time.Second, "ocr scaled to zero", func() bool { return len(s.instances("ocr")) == 0 })

	second := post()
	if second.status != 200 || second.header.Get(api.HeaderColdStart) != "true" || !strings.Contains(string(second.body), "Hello Ember 2026") {
		t.Fatalf("second OCR: %d cold=%q %s", second.status, second.header.Get(api.HeaderColdStart), second.body)
	}
	st := phases(second)
	if !strings.Contains(st, "pool_hit;") {
		t.Errorf("second cold start Server-Timing %q lacks pool_hit", st)
	}
	for _, ph := range []string{"spawned;", "runtime_loaded;", "sessions_created;"} {
		if strings.Contains(st, ph) {
			t.Errorf("second cold start Server-Timing %q has %s: the loaded worker was not taken back", st, ph)
		}
	}
}
