package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestForwardHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Authorization", false},
		{"Proxy-Authorization", false},
		{"Cookie", false},
		{"Ember-Instance", false},
		{"Ember-Prediction-Id", false},
		{"Ember-Cost-Usd", false},
		{"X-Forwarded-For", false}, // set by the proxy, never by the caller
		{"X-Forwarded-Host", false},
		{"Forwarded", false},
		{"X-Real-Ip", false},
		{"Openai-Organization", false},
		{"X-Api-Key", false},
		{"authorization", false}, // non-canonical: dropped too
		{"Accept", true},
		{"Accept-Encoding", true},
		{"Content-Type", true},
		{"Content-Length", true},
		{"Content-Encoding", true},
		{"User-Agent", true},
		{"Cache-Control", true},
		{"Range", true},
		{"If-None-Match", true},
		{"Traceparent", true},
		{"Tracestate", true},
		{"X-Request-Id", true},
		{"Idempotency-Key", true},
		{"Prefer", true},
		{"Te", true},
		{"Upgrade", true},
		{"Sec-Websocket-Key", true},
	} {
		if got := ForwardHeader(tc.name); got != tc.want {
			t.Errorf("ForwardHeader(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFilterHeaderInPlace(t *testing.T) {
	h := http.Header{
		"Authorization":  {"Bearer ember_x"},
		"Ember-Instance": {"spoof"},
		"Content-Type":   {"application/json"},
		"Accept":         {"a", "b"},
	}
	FilterHeader(h)
	want := http.Header{"Content-Type": {"application/json"}, "Accept": {"a", "b"}}
	if d := cmp.Diff(want, h); d != "" {
		t.Errorf("FilterHeader (-want +got):\n%s", d)
	}
}

func TestFilterHeaderAllocatesNothing(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"*/*"}, "X-Request-Id": {"r"}}
	if n := testing.AllocsPerRun(100, func() { FilterHeader(h) }); n != 0 {
		t.Errorf("FilterHeader allocates %v times per call, want 0", n)
	}
}

// The instance sees the allowed headers, Ember's own X-Forwarded-For, and
// nothing else the caller sent.
func TestForwardStripsCallerHeaders(t *testing.T) {
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer up.Close()
	p := New()
	defer p.Close()
	req := httptest.NewRequest("POST", "/v1/run/f/predict", nil)
	req.RemoteAddr = "192.0.2.7:1234"
	for k, v := range map[string]string{
		"Authorization": "Bearer ember_abc", "Cookie": "s=1", "Ember-Instance": "spoof",
		"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6",
		"Content-Type": "application/json", "X-Request-Id": "r1", "Traceparent": "00-1-2-01",
	} {
		req.Header.Set(k, v)
	}
	if err := p.Forward(httptest.NewRecorder(), req, up.Listener.Addr().String(), "/predict"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Authorization", "Cookie", "Ember-Instance", "Forwarded"} {
		if v, ok := got[k]; ok {
			t.Errorf("instance got %s: %q", k, v)
		}
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "X-Request-Id": "r1", "Traceparent": "00-1-2-01", "X-Forwarded-For": "192.0.2.7"} {
		if v := got.Get(k); v != want {
			t.Errorf("instance got %s %q, want %q", k, v, want)
		}
	}
}
