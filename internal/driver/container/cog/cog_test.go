package cog

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const fixtureOpenAPI = `{"components": {"schemas": {
  "Input": {"type": "object", "required": ["prompt"], "properties": {
    "prompt": {"type": "string", "x-order": 0},
    "repeat": {"type": "integer", "minimum": 1, "maximum": 10, "x-order": 1},
    "style": {"allOf": [{"$ref": "#/components/schemas/style"}], "x-order": 2},
    "scale": {"type": "number", "x-order": 3},
    "image": {"type": "string", "format": "uri", "x-order": 4}}},
  "style": {"enum": ["plain", "shout"], "type": "string"}}}}`

func TestCheckHealth(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		ready    bool
		setupErr string // substring of the *SetupError, "" for none
		wantSeen string
	}{
		{"ready", 200, `{"status":"READY","setup":{"status":"succeeded"}}`, true, "", "READY"},
		{"busy is ready but occupied", 200, `{"status":"BUSY"}`, true, "", "BUSY"},
		{"starting waits", 200, `{"status":"STARTING","setup":{"logs":"loading"}}`, false, "", "STARTING"},
		{"setup failed carries the logs", 200, `{"status":"SETUP_FAILED","setup":{"status":"failed","logs":"loading\nRuntimeError: no weights\n"}}`, false, "setup failed (SETUP_FAILED); setup logs: loading | RuntimeError: no weights", ""},
		{"defunct", 200, `{"status":"DEFUNCT"}`, false, "server is defunct (DEFUNCT; no setup logs)", ""},
		{"not cog", 200, `ok`, false, "", "not a Cog health-check answer"},
		{"error status", 503, `{"status":"READY"}`, false, "", "503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != HealthPath {
					t.Errorf("probed %s, want %s", r.URL.Path, HealthPath)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			ready, seen, err := CheckHealth(context.Background(), srv.Client(), srv.URL+HealthPath)
			if ready != tc.ready {
				t.Errorf("ready = %v, want %v", ready, tc.ready)
			}
			var se *SetupError
			switch {
			case tc.setupErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.setupErr != "" && (!errors.As(err, &se) || !strings.Contains(err.Error(), tc.setupErr)):
				t.Errorf("err = %v, want a *SetupError containing %q", err, tc.setupErr)
			}
			if !strings.Contains(seen, tc.wantSeen) {
				t.Errorf("seen = %q, want it to contain %q", seen, tc.wantSeen)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	s, err := ParseOpenAPI([]byte(fixtureOpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(s.Order, ","), "prompt,repeat,style,scale,image"; got != want {
		t.Errorf("order = %s, want %s", got, want)
	}
	var raw struct {
		Properties map[string]struct {
			Type string   `json:"type"`
			Enum []string `json:"enum"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(s.Raw, &raw); err != nil || raw.Properties["style"].Type != "string" || len(raw.Properties["style"].Enum) != 2 {
		t.Errorf("Raw = %s, want style's type and choices inlined", s.Raw)
	}
	tests := []struct {
		name, input string
		want        []string
	}{
		{"ok", `{"prompt":"hi","repeat":3,"style":"shout","scale":0.5}`, nil},
		{"missing required", `{"repeat":2}`, []string{"input.prompt: required"}},
		{"unknown field", `{"prompt":"hi","temperature":1}`, []string{`input.temperature: unknown field (this model takes prompt, repeat, style, scale, image)`}},
		{"wrong type", `{"prompt":5}`, []string{"input.prompt: must be a string (got number 5)"}},
		{"integer refuses a fraction", `{"prompt":"x","repeat":1.5}`, []string{"input.repeat: must be an integer (got number 1.5)"}},
		{"range", `{"prompt":"x","repeat":11}`, []string{"input.repeat: must be ≤ 10 (got 11)"}},
		{"choice", `{"prompt":"x","style":"whisper"}`, []string{`input.style: must be one of "plain", "shout" (got "whisper")`}},
		{"number", `{"prompt":"x","scale":"big"}`, []string{`input.scale: must be a number (got string "big")`}},
		{"all at once", `{"repeat":"a"}`, []string{"input.prompt: required", `input.repeat: must be an integer (got string "a")`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.input), &in); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range s.Validate(in) {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Validate = %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeCog answers /predictions from a function of the request's input.
func fakeCog(t *testing.T, predict func(input map[string]any) (int, string)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/openapi.json":
			io.WriteString(w, fixtureOpenAPI)
		case "/predictions":
			var req struct {
				Input map[string]any `json:"input"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Errorf("adapter sent a body that is not a Cog request: %v", err)
			}
			status, body := predict(req.Input)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAdapter(t *testing.T) {
	cog := fakeCog(t, func(in map[string]any) (int, string) {
		switch in["prompt"] {
		case "fail":
			return 200, `{"status":"failed","output":null,"error":"ValueError: refused","logs":"raising\n"}`
		case "busy":
			return 409, `{"detail":"Already running a prediction"}`
		case "file":
			return 200, `{"status":"succeeded","output":{"image":"data:image/png;base64,iVBORw0KGgo=","caption":"data is text"}}`
		case "pydantic":
			return 422, `{"detail":[{"loc":["body","input","prompt"],"msg":"str type expected","type":"type_error.str"}]}`
		}
		return 200, `{"status":"succeeded","output":["a ","b "],"error":null,"logs":"ok\n","metrics":{"predict_time":0.25}}`
	})
	files := NewFiles("http://ember.test", 1<<20, 0)
	a, err := Listen(strings.TrimPrefix(cog.URL, "http://"), files, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Start()
	base := "http://" + a.Addr()

	post := func(t *testing.T, path, body, accept string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	t.Run("before the schema, cog's own 422 names the field", func(t *testing.T) {
		status, _, body := post(t, "/", `{"prompt":"pydantic"}`, "")
		if status != 422 || !strings.Contains(body, "input.prompt: str type expected") {
			t.Errorf("= %d %s, want 422 naming input.prompt", status, body)
		}
	})
	if err := a.LoadSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Run("file outputs become links", func(t *testing.T) {
		status, _, body := post(t, "/", `{"prompt":"file"}`, "")
		var out struct{ Image, Caption string }
		if status != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("= %d %s", status, body)
		}
		id, ok := strings.CutPrefix(out.Image, "http://ember.test/v1/files/")
		if !ok || len(id) != 32 || out.Caption != "data is text" {
			t.Fatalf("output = %+v, want image as a link and the caption untouched", out)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /v1/files/{id}", files)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/files/"+id, nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/png" || rec.Body.String() != "\x89PNG\r\n\x1a\n" {
			t.Errorf("GET the link = %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
		rec = httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/files/"+strings.Repeat("0", 32), nil))
		if rec.Code != 404 {
			t.Errorf("GET an unknown file = %d, want 404", rec.Code)
		}
	})
	tests := []struct {
		name, path, body, accept string
		status                   int
		want                     []string
	}{
		{"output is the body", "/predict", `{"prompt":"x"}`, "", 200, []string{`["a ","b "]`}},
		{"failed prediction", "/", `{"prompt":"fail"}`, "", 500, []string{`"code":"prediction_failed"`, `prediction failed: ValueError: refused`, `"logs":"raising\n"`}},
		{"schema 422", "/", `{"prompt":"x","repeat":"many"}`, "", 422, []string{`input.repeat: must be an integer`}},
		{"not an object", "/", `[1]`, "", 422, []string{`input: must be a JSON object`}},
		{"busy", "/", `{"prompt":"busy"}`, "", 503, []string{`instance_busy`}},
		{"stream", "/", `{"prompt":"x"}`, "text/event-stream", 200, []string{"event: logs\ndata: ok\n\n", "event: output\ndata: \"a \"\n\nevent: output\ndata: \"b \"\n\n", "event: done"}},
		{"native request, cog's answer", "/predictions", `{"input":{"prompt":"x"}}`, "", 200, []string{`"status":"succeeded"`, `"metrics"`}},
		{"native request validated", "/predictions", `{"input":{"prompt":1}}`, "", 422, []string{`input.prompt: must be a string`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := post(t, tc.path, tc.body, tc.accept)
			if status != tc.status {
				t.Errorf("status = %d, want %d (%s)", status, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body %q lacks %q", body, w)
				}
			}
			if tc.name == "output is the body" && h.Get("Ember-Cog-Predict-Time") != "0.250000" {
				t.Errorf("Ember-Cog-Predict-Time = %q, want 0.250000", h.Get("Ember-Cog-Predict-Time"))
			}
		})
	}
}

func TestFilesBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	f := NewFiles("http://e", 10, time.Minute)
	f.now = func() time.Time { return now }
	first, _ := f.Put("text/plain", []byte("123456"))
	second, _ := f.Put("text/plain", []byte("abcdef"))
	has := func(link string) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.expireLocked(f.now())
		_, ok := f.items[strings.TrimPrefix(link, "http://e/v1/files/")]
		return ok
	}
	if has(first) || !has(second) {
		t.Errorf("over 10 bytes: first kept %v, second kept %v; want the oldest out", has(first), has(second))
	}
	if _, err := f.Put("text/plain", make([]byte, 11)); !errors.Is(err, errTooLarge) {
		t.Errorf("Put 11 bytes into 10 = %v, want errTooLarge", err)
	}
	now = now.Add(time.Minute)
	if has(second) {
		t.Error("file kept past its TTL")
	}
}

// TestAsyncPrediction: a job (Ember-Prediction-Id) goes through Cog's
// async API; the webhook's token is checked and void after completion;
// items stream as Cog sends them, then the whole list as the result.
func TestAsyncPrediction(t *testing.T) {
	type probe struct {
		wrongToken, afterDone int
	}
	probes := make(chan probe, 1)
	cogSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID      string   `json:"id"`
			Webhook string   `json:"webhook"`
			Filter  []string `json:"webhook_events_filter"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if r.Header.Get("Prefer") != "respond-async" || req.Webhook == "" || len(req.Filter) != 4 {
			t.Errorf("request: Prefer %q, %+v; want an async request with a webhook for all events", r.Header.Get("Prefer"), req)
		}
		w.WriteHeader(202)
		io.WriteString(w, `{"status":"starting"}`)
		go func() {
			post := func(url, body string) int {
				resp, err := http.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			var p probe
			u, _ := url.Parse(req.Webhook)
			q := u.Query()
			q.Set("token", q.Get("token")+"x")
			wrong := *u
			wrong.RawQuery = q.Encode()
			p.wrongToken = post(wrong.String(), `{"status":"succeeded","output":["forged"]}`)
			post(req.Webhook, `{"status":"processing","output":["a "],"logs":"one\n"}`)
			post(req.Webhook, `{"status":"processing","output":["a ","b "],"logs":"one\ntwo\n"}`)
			post(req.Webhook, `{"status":"succeeded","output":["a ","b "],"logs":"one\ntwo\n"}`)
			// The adapter has answered; the token is void now.
			for range 100 {
				if p.afterDone = post(req.Webhook, `{"status":"succeeded","output":["late"]}`); p.afterDone == 404 {
					break
				}
				time.Sleep(10 * time.Millisecond) // polls the adapter's cleanup after its answer
			}
			probes <- p
		}()
	}))
	defer cogSrv.Close()
	a, err := Listen(strings.TrimPrefix(cogSrv.URL, "http://"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.ListenCallbacks("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	a.Start()
	req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/predict", strings.NewReader(`{"prompt":"x"}`))
	req.Header.Set("Ember-Prediction-Id", "p1")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "event: logs\ndata: one\n\nevent: output\ndata: \"a \"\n\nevent: logs\ndata: two\n\nevent: output\ndata: \"b \"\n\nevent: result\ndata: [\"a \",\"b \"]\n\nevent: done"
	if !strings.HasPrefix(string(body), want) || strings.Contains(string(body), "forged") {
		t.Errorf("stream:\n%s\nwant:\n%s", body, want)
	}
	p := <-probes
	if p.wrongToken != 404 || p.afterDone != 404 {
		t.Errorf("webhook with a wrong token = %d, after completion = %d; want 404 and 404", p.wrongToken, p.afterDone)
	}
}
