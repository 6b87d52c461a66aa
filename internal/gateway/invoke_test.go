package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// TestInvokeHeaderNamesCanonical: invoke keys the response Header map by
// these names directly; a name not in canonical form would be missed by
// Header.Get and duplicated by a later Set.
func TestInvokeHeaderNamesCanonical(t *testing.T) {
	for _, name := range []string{api.HeaderColdStart, api.HeaderInstance, api.HeaderQueueMs, api.HeaderServerTiming} {
		if got := http.CanonicalHeaderKey(name); got != name {
			t.Errorf("%q is not canonical (%q)", name, got)
		}
	}
	if got := http.CanonicalHeaderKey(api.HeaderCost); got != canonicalCost {
		t.Errorf("canonicalCost = %q, want %q", canonicalCost, got)
	}
}

func TestSplitFunction(t *testing.T) {
	deployed := func(fn string) bool { return fn == "acme/chat" || fn == "echo" || fn == "acme" }
	for _, tc := range []struct {
		rest, name, remainder string
		ok                    bool
	}{
		{"echo", "echo", "", true},
		{"echo/", "echo", "/", true},
		{"echo/v1/x", "echo", "/v1/x", true},
		{"acme/chat", "acme/chat", "", true},
		{"acme/chat/", "acme/chat", "/", true},
		{"acme/chat/v1/completions", "acme/chat", "/v1/completions", true},
		{"acme/other/x", "acme", "/other/x", true}, // owner/name not deployed: the bare name is
		{"nope", "nope", "", false},
		{"nope/x", "nope", "", false},
		{"", "", "", false},
	} {
		name, rem, ok := splitFunction(tc.rest, deployed)
		if name != tc.name || rem != tc.remainder || ok != tc.ok {
			t.Errorf("splitFunction(%q) = %q, %q, %v; want %q, %q, %v", tc.rest, name, rem, ok, tc.name, tc.remainder, tc.ok)
		}
	}
	for rest, want := range map[string]string{"a": "a", "a/b": "a/b", "a/b/c/d": "a/b", "a/": "a/", "": ""} {
		if got := firstTwo(rest); got != want {
			t.Errorf("firstTwo(%q) = %q, want %q", rest, got, want)
		}
	}
}

func TestFormatQueueMs(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000"},
		{999 * time.Nanosecond, "0.000"},
		{time.Microsecond, "0.001"},
		{312480 * time.Microsecond, "312.480"},
		{2 * time.Second, "2000.000"},
	} {
		if got := formatQueueMs(tc.d); got != tc.want {
			t.Errorf("formatQueueMs(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
