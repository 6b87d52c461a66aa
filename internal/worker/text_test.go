package worker

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
	"github.com/ember-run/ember/internal/textmodel"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

// textServer serves a generated model for task through the worker's
// real loader path (textmodel.Load with the task options).
func textServer(t *testing.T, task string, opts TaskOptions) (*Server, *httptest.Server) {
	t.Helper()
	lib, err := (&models.Client{}).RuntimeLibrary(context.Background(), ocrtest.CacheDir(t), os.Getenv("EMBER_ORT_LIB"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := ocr.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	c := bertgen.Small()
	if task == TaskClassification {
		c.Labels = []string{"NEGATIVE", "POSITIVE"}
	}
	dir := t.TempDir()
	if err := bertgen.Write(dir, c, bertgen.Options{MaxLength: 64}); err != nil {
		t.Fatal(err)
	}
	load := func(ctx context.Context, task, dir string, o TaskOptions) (Model, error) {
		return textmodel.Load(dir, o.TextOptions(task, 1))
	}
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), load, Config{MaxBytes: 1 << 20, Warmup: WarmupOn}, time.Now())
	s.RuntimeLoaded(time.Now())
	if err := s.Load(context.Background(), task, dir, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return resp.StatusCode, out
}

func TestTextClassificationHTTP(t *testing.T) {
	_, ts := textServer(t, TaskClassification, TaskOptions{MaxLength: 16})
	for _, tc := range []struct {
		body string
		code int
		want string // error message, or a key the answer has
	}{
		{`{}`, 400, "Missing 'text' field"},
		{``, 400, "Missing 'text' field"},
		{`{"txt": "typo"}`, 400, "Missing 'text' field"},
		{`{"text": ""}`, 400, "text: is empty"},
		{`{"texts": ["ok", ""]}`, 400, "texts[1]: is empty"},
		{`{"texts": []}`, 400, "texts: no texts given"},
		{`{"text": "a", "texts": ["b"]}`, 400, `give "text" or "texts", not both`},
		{`{"text": "a", "top_k": -1}`, 400, "top_k: must be ≥ 1 (got -1)"},
		{`{"text": 5}`, 400, "body is not valid JSON"},
		{`{"text": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "body too large: limit 1048576 bytes"},
		{`{"text": "I love this movie!"}`, 200, "label"},
	} {
		code, out := postJSON(t, ts.URL+"/predict", tc.body)
		if code != tc.code {
			t.Errorf("%.40s: %d %v, want %d", tc.body, code, out, tc.code)
			continue
		}
		if code != 200 {
			if msg, _ := out["error"].(string); !strings.HasPrefix(msg, tc.want) {
				t.Errorf("%.40s: error %q, want %q", tc.body, msg, tc.want)
			}
			continue
		}
		if l := out["label"]; l != "NEGATIVE" && l != "POSITIVE" {
			t.Errorf("label %v not from config.json", l)
		}
		if s, _ := out["score"].(float64); s < 0.5 || s > 1 || len(out) != 2 {
			t.Errorf("seed's shape {label, score}: %v", out)
		}
	}
	_, out := postJSON(t, ts.URL+"/", `{"text": "great", "top_k": 2}`)
	if ls, _ := out["labels"].([]any); len(ls) != 2 {
		t.Errorf("top_k 2: %v", out)
	}
	_, out = postJSON(t, ts.URL+"/", `{"texts": ["great", "`+strings.Repeat("word ", 100)+`"]}`)
	rs, _ := out["results"].([]any)
	u, _ := out["usage"].(map[string]any)
	if len(rs) != 2 || u["truncated"] != 1.0 || u["tokens"] != 3.0+16 {
		t.Errorf("texts with max_length 16: %v", out)
	}
}

func TestOpenAIEmbeddingsHTTP(t *testing.T) {
	s, ts := textServer(t, TaskEmbeddings, TaskOptions{})
	tok := s.model.(*textmodel.Model).Tokenizer()
	code, out := postJSON(t, ts.URL+"/v1/embeddings", `{"model": "e", "input": ["hello world", "Héllo, Wörld!"]}`)
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	data, _ := out["data"].([]any)
	usage, _ := out["usage"].(map[string]any)
	want := tok.CountTokens("hello world") + tok.CountTokens("Héllo, Wörld!")
	if len(data) != 2 || usage["prompt_tokens"] != float64(want) || out["object"] != "list" || out["model"] != "e" {
		t.Fatalf("answer %v, want 2 embeddings and prompt_tokens %d", out, want)
	}
	first := data[0].(map[string]any)["embedding"].([]any)
	if len(first) != 32 {
		t.Fatalf("embedding of %d dims, want hidden 32", len(first))
	}
	// base64: the same float32 values, little-endian.
	_, out = postJSON(t, ts.URL+"/v1/embeddings", `{"model": "e", "input": "hello world", "encoding_format": "base64"}`)
	b64 := out["data"].([]any)[0].(map[string]any)["embedding"].(string)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 4*32 {
		t.Fatalf("base64 embedding: %v, %d bytes", err, len(raw))
	}
	for k := range 32 {
		f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		if float64(f) != first[k].(float64) && math.Abs(float64(f)-first[k].(float64)) > 1e-6 {
			t.Fatalf("[%d] base64 %v, float %v", k, f, first[k])
		}
	}
	for _, tc := range []struct{ body, param string }{
		{`{"model": "e"}`, "input"},
		{`{"model": "e", "input": [1, 2, 3]}`, "input"},
		{`{"model": "e", "input": [""]}`, "input"},
		{`{"model": "e", "input": "x", "encoding_format": "int8"}`, "encoding_format"},
		{`{"model": "e", "input": "x", "dimensions": 8}`, "dimensions"},
	} {
		code, out := postJSON(t, ts.URL+"/v1/embeddings", tc.body)
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["param"] != tc.param || e["message"] == "" {
			t.Errorf("%s: %d %v", tc.body, code, out)
		}
	}
}
