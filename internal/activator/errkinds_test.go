package activator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

func TestStartFailedKinds(t *testing.T) {
	now := time.Unix(1000, 0)
	budget := &errkind.Error{Kind: errkind.RateLimited, Code: "budget_exceeded", Msg: "budget exceeded", RetryAfter: time.Minute}
	tests := []struct {
		name  string
		err   *StartFailedError
		kind  errkind.Kind
		code  string
		retry time.Duration
	}{
		{"a failed start backs off", &StartFailedError{Err: errors.New("exit status 1"), RetryAt: now.Add(3 * time.Second)}, errkind.Unavailable, "start_failed", 3 * time.Second},
		{"at least a second", &StartFailedError{Err: errors.New("exit status 1"), RetryAt: now}, errkind.Unavailable, "start_failed", time.Second},
		{"a budget refusal says so", &StartFailedError{Err: fmt.Errorf("%w: spent", budget), RetryAt: now}, errkind.RateLimited, "budget_exceeded", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, c, r := tt.err.ErrorKind(), tt.err.ErrorCode(), tt.err.RetryAfter(now); k != tt.kind || c != tt.code || r != tt.retry {
				t.Errorf("kind, code, retry = %v %s %s, want %v %s %s", k, c, r, tt.kind, tt.code, tt.retry)
			}
		})
	}
}
