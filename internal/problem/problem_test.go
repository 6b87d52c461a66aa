package problem

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

var errGone = errkind.New(errkind.NotFound, "unknown_function", "unknown function")

type backoff struct{ until time.Time }

func (b *backoff) Error() string                          { return "instance failed to start: exit 1" }
func (b *backoff) ErrorKind() errkind.Kind                { return errkind.Unavailable }
func (b *backoff) ErrorCode() string                      { return "start_failed" }
func (b *backoff) RetryAfter(now time.Time) time.Duration { return max(b.until.Sub(now), time.Second) }

func TestClassify(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name       string
		err        error
		status     int
		code, msg  string
		retryAfter string
	}{
		{"sentinel wrapped keeps its detail", fmt.Errorf("%w %q", errGone, "f"), 404, "unknown_function", `unknown function "f"`, ""},
		{"reply hides its cause", &errkind.Error{Kind: errkind.Upstream, Code: "instance_exited", Msg: "instance i-1 exited", Err: errors.New("EOF")}, 502, "instance_exited", "instance i-1 exited", ""},
		{"outermost kind wins", &errkind.Error{Kind: errkind.Upstream, Code: "instance_exited", Msg: "exited", Err: errGone}, 502, "instance_exited", "exited", ""},
		{"typed with retry", fmt.Errorf("call: %w", &backoff{until: now.Add(2500 * time.Millisecond)}), 503, "start_failed", "call: instance failed to start: exit 1", "3"},
		{"retry at least a second", &backoff{until: now}, 503, "start_failed", "instance failed to start: exit 1", "1"},
		{"static retry", &errkind.Error{Kind: errkind.RateLimited, Code: "budget_exceeded", Msg: "budget exceeded", RetryAfter: time.Minute}, 429, "budget_exceeded", "budget exceeded", "60"},
		{"body too large", &http.MaxBytesError{Limit: 10}, 413, "body_too_large", "request body too large: limit is 10 bytes", ""},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), 504, "timeout", "request timed out: x: context deadline exceeded", ""},
		{"client gone", context.Canceled, 499, "client_closed", "client closed the request", ""},
		{"anything else says nothing", errors.New("disk on fire"), 500, "internal", "internal error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Classify(tt.err, now)
			if p.Status != tt.status || p.Code != tt.code || p.Msg != tt.msg {
				t.Errorf("Classify = %d %s %q, want %d %s %q", p.Status, p.Code, p.Msg, tt.status, tt.code, tt.msg)
			}
			w := httptest.NewRecorder()
			WriteEmber(w, p)
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if w.Code != tt.status {
				t.Errorf("written status %d, want %d", w.Code, tt.status)
			}
		})
	}
}

func TestKindStatusRoundTrip(t *testing.T) {
	for k := errkind.Internal; k <= errkind.Timeout; k++ {
		if got := errkind.FromStatus(k.Status()); got != k {
			t.Errorf("FromStatus(%d) = %d, want %d", k.Status(), got, k)
		}
	}
}
