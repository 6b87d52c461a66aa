package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// sharedEngine loads the real models once per test binary; servers get a
// view whose Close does nothing.
var sharedEngine = struct {
	once sync.Once
	eng  *ocr.Engine
	dir  string
	err  error
}{}

type noClose struct{ *ocr.Engine }

func (noClose) Close() error { return nil }

func realLoader(t testing.TB) (LoadFunc, string) {
	t.Helper()
	lib, dir := ocrtest.Assets(t)
	sharedEngine.once.Do(func() {
		if sharedEngine.err = ocr.InitRuntime(lib); sharedEngine.err != nil {
			return
		}
		sharedEngine.eng, sharedEngine.err = ocr.Load(dir, ocr.Options{})
		sharedEngine.dir = dir
	})
	if sharedEngine.err != nil {
		t.Fatal(sharedEngine.err)
	}
	return func(ctx context.Context, task, d string, _ TaskOptions) (Model, error) {
		return noClose{sharedEngine.eng}, nil
	}, sharedEngine.dir
}

func newTestServer(t *testing.T, cfg Config, loaded bool) (*Server, *httptest.Server) {
	t.Helper()
	load, dir := realLoader(t)
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), load, cfg, time.Now())
	s.RuntimeLoaded(time.Now())
	if loaded {
		if err := s.Load(context.Background(), "ocr", dir, TaskOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

type reply struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, method, url, ctype string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func multipartBody(t *testing.T, field, filename string, data []byte, extra map[string]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range extra {
		mw.WriteField(k, v)
	}
	if field != "" {
		w, err := mw.CreateFormFile(field, filename)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func TestPredictInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	_, ts := newTestServer(t, Config{}, true)
	png := ocrtest.Hello(t, "png")
	jpg := ocrtest.Hello(t, "jpg")
	b64 := base64.StdEncoding.EncodeToString(png)
	jsonBody := func(s string) []byte { b, _ := json.Marshal(map[string]string{"image": s}); return b }
	mpImage, mpImageBody := multipartBody(t, "image", "hello.png", png, map[string]string{"note": "x"})
	mpFile, mpFileBody := multipartBody(t, "upload", "hello.jpg", jpg, nil)

	tests := []struct {
		name, path, ctype string
		body              []byte
	}{
		{"raw png", "/", "image/png", png},
		{"raw jpeg on /predict", "/predict", "image/jpeg", jpg},
		{"raw without content type", "/", "", png},
		{"multipart image field", "/predict", mpImage, mpImageBody},
		{"multipart first file", "/", mpFile, mpFileBody},
		{"json base64", "/", "application/json", jsonBody(b64)},
		{"json data url", "/predict", "application/json", jsonBody("data:image/png;base64," + b64)},
		{"json url-safe unpadded", "/", "application/json", jsonBody(strings.TrimRight(base64.URLEncoding.EncodeToString(png), "="))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, http.MethodPost, ts.URL+tt.path, tt.ctype, tt.body)
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.raw)
			}
			if got, want := r.body["text"], "Hello Ember 2026"; got != want {
				t.Errorf("text = %q, want %q", got, want)
			}
			lines, _ := r.body["lines"].([]any)
			if len(lines) != 1 {
				t.Fatalf("lines = %v, want 1", r.body["lines"])
			}
			box, _ := lines[0].(map[string]any)["box"].([]any)
			if len(box) != 4 {
				t.Errorf("box = %v, want 4 points", box)
			}
			tm, _ := r.body["timings_ms"].(map[string]any)
			for _, k := range []string{"decode_ms", "det_ms", "rec_ms", "total_ms"} {
				if _, ok := tm[k]; !ok {
					t.Errorf("timings_ms lacks %s: %v", k, tm)
				}
			}
			if st := r.header.Get("Server-Timing"); !strings.Contains(st, "det;dur=") {
				t.Errorf("Server-Timing = %q, want det;dur=...", st)
			}
		})
	}
}

func TestPredictBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	_, ts := newTestServer(t, Config{MaxBytes: 1000}, true)
	png := ocrtest.Hello(t, "png") // ~2.6 kB, over the 1000-byte limit
	small := png[:200]             // a truncated PNG under the limit
	mpNone, mpNoneBody := multipartBody(t, "", "", nil, map[string]string{"note": "no file"})
	mpBig, mpBigBody := multipartBody(t, "image", "big.png", bytes.Repeat([]byte{1}, 1500), nil)
	jsonBig, _ := json.Marshal(map[string]string{"image": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 1200))})

	tests := []struct {
		name, ctype string
		body        []byte
		want        string // exact error, or prefix when ending in "..."
	}{
		{"empty body", "image/png", nil, "missing image"},
		{"json without image", "application/json", []byte(`{"img": "x"}`), "missing image"},
		{"json empty image", "application/json", []byte(`{"image": ""}`), "missing image"},
		{"multipart without file", mpNone, mpNoneBody, "missing image"},
		{"garbage bytes", "image/png", []byte("hello, not a picture"), "not an image: image: unknown format"},
		{"truncated png", "image/png", small, "not an image: ..."},
		{"bad base64", "application/json", []byte(`{"image": "!!!not base64!!!"}`), "not an image: invalid base64..."},
		{"data url not base64", "application/json", []byte(`{"image": "data:image/png,abc"}`), "not an image: data URL must be base64..."},
		{"json base64 of text", "application/json", []byte(`{"image": "` + base64.StdEncoding.EncodeToString([]byte("plain text")) + `"}`), "not an image: image: unknown format"},
		{"raw too large", "image/png", png, "image too large: " + itoa(len(png)) + " bytes > limit 1000"},
		{"multipart too large", mpBig, mpBigBody, "image too large: at least 1001 bytes > limit 1000"},
		{"json too large", "application/json", jsonBig, "image too large: 1200 bytes > limit 1000"},
		{"bad json", "application/json", []byte(`{"image":`), "bad JSON body: ..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, http.MethodPost, ts.URL+"/predict", tt.ctype, tt.body)
			if r.code != http.StatusBadRequest {
				t.Errorf("status = %d, want 400 (%s)", r.code, r.raw)
			}
			got, _ := r.body["error"].(string)
			if prefix, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("error = %q, want prefix %q", got, prefix)
				}
			} else if got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
	// The worker is still up and still right after all of that.
	if r := do(t, http.MethodGet, ts.URL+"/health", "", nil); r.code != http.StatusOK {
		t.Errorf("health after bad inputs = %d, want 200", r.code)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestPoolSpecialise(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	s, ts := newTestServer(t, Config{Warmup: WarmupOn}, false)
	_, dir := realLoader(t)

	if r := do(t, http.MethodGet, ts.URL+"/health", "", nil); r.code != http.StatusServiceUnavailable {
		t.Errorf("health before load = %d, want 503", r.code)
	}
	if r := do(t, http.MethodGet, ts.URL+"/live", "", nil); r.code != http.StatusOK {
		t.Errorf("live before load = %d, want 200", r.code)
	}
	if r := do(t, http.MethodPost, ts.URL+"/", "image/png", ocrtest.Hello(t, "png")); r.code != http.StatusServiceUnavailable || r.body["error"] != "no model loaded" {
		t.Errorf("predict before load = %d %s, want 503 no model loaded", r.code, r.raw)
	}

	loads := []struct {
		name string
		body string
		code int
	}{
		{"bad task", `{"task":"tts","model_dir":"` + dir + `"}`, http.StatusBadRequest},
		{"missing dir", `{"task":"ocr"}`, http.StatusBadRequest},
		{"load", `{"task":"ocr","model_dir":"` + dir + `"}`, http.StatusOK},
		{"same again", `{"task":"ocr","model_dir":"` + dir + `"}`, http.StatusOK},
		{"another model", `{"task":"ocr","model_dir":"/elsewhere"}`, http.StatusConflict},
	}
	for _, l := range loads {
		if r := do(t, http.MethodPost, ts.URL+"/load", "application/json", []byte(l.body)); r.code != l.code {
			t.Errorf("%s: POST /load = %d %s, want %d", l.name, r.code, r.raw, l.code)
		}
	}
	if r := do(t, http.MethodGet, ts.URL+"/health", "", nil); r.code != http.StatusOK {
		t.Errorf("health after load = %d, want 200", r.code)
	}
	r := do(t, http.MethodPost, ts.URL+"/", "image/png", ocrtest.Hello(t, "png"))
	if r.body["text"] != "Hello Ember 2026" {
		t.Errorf("predict after load = %d %s", r.code, r.raw)
	}

	var names []string
	var last int64
	for _, p := range s.Phases() {
		if p.At < last {
			t.Errorf("phase %s at %d is before the previous one (%d)", p.Name, p.At, last)
		}
		last = p.At
		names = append(names, p.Name)
	}
	got := strings.Join(names, ",")
	if !strings.HasPrefix(got, "process_start,runtime_loaded,load_requested") || !strings.Contains(got, "sessions_created,warmup_done") {
		t.Errorf("phases = %s, want process_start,runtime_loaded,load_requested,...,sessions_created,warmup_done", got)
	}
}
