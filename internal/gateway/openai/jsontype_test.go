package openai

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestJSONRelabel checks which answers leave with Content-Type
// application/json: a whole JSON body the model server labelled otherwise,
// and nothing else.
func TestJSONRelabel(t *testing.T) {
	big := `{"x":"` + strings.Repeat("a", MaxRelabelBytes) + `"}`
	tests := []struct {
		name, ctype, body string
		status            int
		noSniff           bool // answer with no Content-Type at all
		want              string
	}{
		{name: "json as text/plain", ctype: "text/plain; charset=utf-8", body: `{"object":"chat.completion"}`, want: "application/json"},
		{name: "json with no type", noSniff: true, body: `{"object":"list","data":[]}`, want: "application/json"},
		{name: "json error as text/plain", ctype: "text/plain", status: 400, body: `{"error":{"message":"bad"}}`, want: "application/json"},
		{name: "text stays text", ctype: "text/plain", body: `Hello, {world}`, want: "text/plain"},
		{name: "truncated json stays text", ctype: "text/plain", body: `{"object":`, want: "text/plain"},
		{name: "json stays json", ctype: "application/json; charset=utf-8", body: `{}`, want: "application/json; charset=utf-8"},
		{name: "+json stays", ctype: "application/vnd.x+json", body: `{}`, want: "application/vnd.x+json"},
		{name: "over the limit passes unchanged", ctype: "text/plain", body: big, want: "text/plain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.noSniff {
					w.Header()["Content-Type"] = nil // net/http neither sets nor sniffs one
				} else {
					w.Header().Set("Content-Type", tc.ctype)
				}
				if tc.status != 0 {
					w.WriteHeader(tc.status)
				}
				io.WriteString(w, tc.body)
			}))
			defer up.Close()
			gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"m": up.URL}}, Options{})
			resp, err := http.Post(gw.URL+PathChatCompletions, "application/json", strings.NewReader(`{"model":"m"}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != tc.body {
				t.Errorf("body changed: %d bytes, want %d", len(got), len(tc.body))
			}
			want := max(tc.status, 200)
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != want || ct != tc.want {
				t.Errorf("answer = %d %q; want %d %q", resp.StatusCode, ct, want, tc.want)
			}
		})
	}
}

// TestRelabelNeverHoldsStreams checks that answers that may be streams pass
// through as they come: the upstream sends its first chunk, then waits
// until the client has read it.
func TestRelabelNeverHoldsStreams(t *testing.T) {
	tests := []struct {
		name, ctype, request string
		chunk                string
	}{
		{"stream request, text/plain answer", "text/plain", `{"model":"m","stream":true}`, `{"partial":`},
		{"event stream for a plain request", "text/event-stream", `{"model":"m"}`, `data: {"i":0}` + "\n\n"},
		{"over the limit, no length", "text/plain", `{"model":"m"}`, `[` + strings.Repeat(`0,`, MaxRelabelBytes/2+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			releaseAll := func() { once.Do(func() { close(release) }) }
			defer releaseAll()
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				io.WriteString(w, tc.chunk)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "0]")
			}))
			defer up.Close()
			gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"m": up.URL}}, Options{})
			// The deadline turns a holding bug into a failure instead of a hang.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", gw.URL+PathChatCompletions, strings.NewReader(tc.request))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no answer before the upstream finished: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, len(tc.chunk))
			if _, err := io.ReadFull(bufio.NewReader(resp.Body), first); err != nil || string(first) != tc.chunk {
				t.Fatalf("first chunk: %v", err)
			}
			releaseAll()
			if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type = %q, want %q unchanged", ct, tc.ctype)
			}
		})
	}
}

func TestModelRetrieve(t *testing.T) {
	gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"team/llm": "", "a": ""}}, Options{})
	tests := []struct {
		path   string
		status int
		id     string
	}{
		{PathModels + "/a", 200, "a"},
		{PathModels + "/team/llm", 200, "team/llm"},
		{PathModels + "/team%2Fllm", 200, "team/llm"}, // how the openai client escapes it
		{PathModels + "/nope", 404, ""},
		{PathModels + "/team", 404, ""},
	}
	for _, tc := range tests {
		resp, err := http.Get(gw.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Model
			Error struct{ Code, Type string } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		switch {
		case err != nil:
			t.Errorf("GET %s: %v", tc.path, err)
		case resp.StatusCode != tc.status:
			t.Errorf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.status)
		case tc.status == 200 && (body.ID != tc.id || body.Object != "model" || body.OwnedBy == ""):
			t.Errorf("GET %s = %+v", tc.path, body.Model)
		case tc.status == 404 && (body.Error.Code != "model_not_found" || body.Error.Type != "invalid_request_error"):
			t.Errorf("GET %s error = %+v", tc.path, body.Error)
		}
	}
}
