package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// TestBoundsInstanceLimits: a spec asking for more instances than the
// server allows per function is refused at deploy, naming the field and the
// limit, and the server stays healthy.
func TestBoundsInstanceLimits(t *testing.T) {
	s := startServer(t, "")
	for _, tc := range []struct {
		name, scaling, want string
	}{
		{"max", "{max: 65}", "scaling.max: 65 exceeds this server's limit of 64 instances per function (--max-instances-per-function)"},
		{"min", "{min: 100000}", "scaling.min: 100000 exceeds this server's limit of 64 instances per function (--max-instances-per-function)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/v1/functions", strings.NewReader(simSpec("big-"+tc.name, tc.scaling)))
			req.Header.Set("Authorization", "Bearer "+s.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("deploy: %v (the server must answer)", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
				t.Fatalf("deploy %s = %d %s, want 400 with %q", tc.scaling, resp.StatusCode, b, tc.want)
			}
			if r := s.call("GET", "/healthz", ""); r.status != 200 {
				t.Fatalf("healthz after refused deploy = %d", r.status)
			}
			if n := len(descendants(s.cmd.Process.Pid)); n > 2 {
				t.Errorf("server has %d child processes after a refused deploy, want none but the guard", n)
			}
		})
	}
	// The server still deploys and serves within its limits.
	s.deploy(simSpec("small", "{min: 1, max: 64}"))
	if r := s.call("POST", "/v1/run/small/predict", `{"echo": 1}`); r.status != 200 {
		t.Fatalf("run small = %d %s", r.status, r.body)
	}
}

// TestBoundsListBytes: a page of predictions is bounded in bytes: large
// inputs are summarised, the page stops at the byte budget and its cursor
// continues, and the full input is still there by id.
func TestBoundsListBytes(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("listsim", "{min: 0, max: 1, concurrency: 8}"))
	create := func(pad int) string {
		t.Helper()
		in, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", pad)})
		p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "listsim", Input: in}, client.PredictionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	const big = 3 << 20
	var bigIDs []string
	for range 3 {
		bigIDs = append(bigIDs, create(big))
	}
	all := map[string]bool{}
	for _, id := range bigIDs {
		all[id] = true
	}
	for range 90 { // 90 × 60 KiB: inline, but over the 4 MiB page budget together
		all[create(60<<10)] = true
	}

	type page struct {
		Next    *string           `json:"next"`
		Results []json.RawMessage `json:"results"`
	}
	seen := map[string]bool{}
	path := "/v1/predictions?limit=100"
	pages := 0
	for path != "" {
		r := s.call("GET", path, "")
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		if len(r.body) > 4<<20+64<<10 {
			t.Errorf("page %d is %d bytes, want ≤ the 4 MiB budget", pages, len(r.body))
		}
		var p page
		decode(t, r.body, &p)
		pages++
		for _, raw := range p.Results {
			var pr struct {
				ID      string           `json:"id"`
				Input   json.RawMessage  `json:"input"`
				Omitted map[string]int64 `json:"omitted"`
			}
			decode(t, raw, &pr)
			if seen[pr.ID] {
				t.Errorf("prediction %s listed twice", pr.ID)
			}
			seen[pr.ID] = true
			if len(raw) > 256<<10 {
				t.Errorf("prediction %s is %d bytes in the list, want its large fields summarised", pr.ID, len(raw))
			}
			for _, id := range bigIDs {
				if pr.ID == id && pr.Omitted["input"] < big {
					t.Errorf("big prediction %s: omitted = %v, want input's size (≥ %d)", id, pr.Omitted, big)
				}
			}
		}
		path = ""
		if p.Next != nil && *p.Next != "" {
			path = strings.TrimPrefix(*p.Next, s.url)
		}
	}
	if pages < 2 {
		t.Errorf("listed in %d page(s), want the byte budget to end the first page early", pages)
	}
	for id := range all {
		if !seen[id] {
			t.Errorf("prediction %s missing from the pages", id)
		}
	}
	// By id, the whole input.
	r := s.call("GET", "/v1/predictions/"+bigIDs[0], "")
	var full struct {
		Input struct {
			Pad string `json:"pad"`
		} `json:"input"`
	}
	decode(t, r.body, &full)
	if len(full.Input.Pad) != big {
		t.Errorf("GET by id: input pad of %d bytes, want %d", len(full.Input.Pad), big)
	}
}

// trickle opens a raw connection, sends a request whose body of n bytes it
// then sends one byte per tick until stop closes; each byte sent is
// reported on sent.
func trickle(t *testing.T, addr, key, path string, n int, tick time.Duration, stop <-chan struct{}, sent chan<- struct{}) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", path, addr, key, n)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		if _, err := conn.Write([]byte("x")); err != nil {
			return
		}
		select {
		case sent <- struct{}{}:
		default:
		}
	}
}

// TestBoundsSlowBodiesHoldNoSlot: callers trickling their bodies do not hold
// the only instance slot of a function; a normal caller is served at once.
func TestBoundsSlowBodiesHoldNoSlot(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("slowbody", "{min: 1, max: 1, concurrency: 1}"))
	s.waitReady("slowbody")
	stop := make(chan struct{})
	defer close(stop)
	const tricklers = 4
	sent := make(chan struct{}, 100)
	for range tricklers {
		go trickle(t, s.addr, s.key, "/v1/run/slowbody/predict", 1000, 50*time.Millisecond, stop, sent)
	}
	// Every trickler is well into its body (headers long since read).
	for range tricklers * 5 {
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
			t.Fatal("tricklers did not start")
		}
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.url+"/v1/run/slowbody/predict", strings.NewReader(`{"echo": "fast"}`))
		req.Header.Set("Authorization", "Bearer "+s.key)
		start := time.Now()
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			done <- result{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{status: resp.StatusCode, body: b, elapsed: time.Since(start)}
	}()
	select {
	case r := <-done:
		if r.status != 200 {
			t.Fatalf("normal caller = %d %s, want 200", r.status, r.body)
		}
	case <-time.After(5 * time.Second): // the tricklers need 50 s to finish
		t.Fatal("normal caller not served within 5 s while slow senders trickle their bodies")
	}
}

// chunkedReader hides its length, so the client sends the body with
// Transfer-Encoding: chunked (ContentLength stays 0, unknown).
type chunkedReader struct{ io.Reader }

// TestBoundsChunkedBodyTooLarge: a chunked body over max_body_bytes gets 413,
// both when it is small enough to be read before the call and when it
// streams to the instance.
func TestBoundsChunkedBodyTooLarge(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("small-body", "{min: 1, max: 1}", "max_body_bytes: 1000"))
	s.deploy(simSpec("big-body", "{min: 1, max: 1}", "max_body_bytes: 2097152"))
	s.waitReady("small-body")
	s.waitReady("big-body")
	for _, tc := range []struct {
		fn   string
		size int
	}{{"small-body", 5000}, {"big-body", 3 << 20}} {
		t.Run(tc.fn, func(t *testing.T) {
			req, _ := http.NewRequest("POST", s.url+"/v1/run/"+tc.fn+"/echo", chunkedReader{bytes.NewReader(bytes.Repeat([]byte("x"), tc.size))})
			req.Header.Set("Authorization", "Bearer "+s.key)
			req.Header.Set("Expect", "100-continue") // as curl sends for bodies over 1 MiB
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "body_too_large") {
				t.Fatalf("chunked %d-byte body = %d %q, want 413 body_too_large", tc.size, resp.StatusCode, b)
			}
		})
	}
	// Within the limit, chunked still works.
	req, _ := http.NewRequest("POST", s.url+"/v1/run/small-body/echo", chunkedReader{strings.NewReader("hello")})
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"body":"hello"`) {
		t.Errorf("chunked small body = %d %s, want 200 echoing hello", resp.StatusCode, b)
	}
}
