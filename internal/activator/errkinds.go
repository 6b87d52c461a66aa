package activator

import (
	"errors"
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

// The kinds clients see for Try's typed errors (internal/problem).

// startCause is the kind a start was refused with, when the refusal says
// so itself (a budget holding the function at zero is RateLimited, not a
// failure to start); nil for a start that failed.
func (e *StartFailedError) startCause() *errkind.Error {
	var k *errkind.Error
	if errors.As(e.Err, &k) {
		return k
	}
	return nil
}

func (e *StartFailedError) ErrorKind() errkind.Kind {
	if c := e.startCause(); c != nil {
		return c.Kind
	}
	return errkind.Unavailable
}

func (e *StartFailedError) ErrorCode() string {
	if c := e.startCause(); c != nil {
		return c.Code
	}
	return "start_failed"
}

// RetryAfter is the refusal's own wait, or how long until the next start
// may be tried, at least a second.
func (e *StartFailedError) RetryAfter(now time.Time) time.Duration {
	if c := e.startCause(); c != nil && c.RetryAfter > 0 {
		return c.RetryAfter
	}
	return max(e.RetryAt.Sub(now), time.Second)
}

func (e *QueueFullError) ErrorKind() errkind.Kind { return errkind.Unavailable }
func (e *QueueFullError) ErrorCode() string       { return "queue_full" }

// RetryAfter: a full queue drains in about a second at typical rates.
func (e *QueueFullError) RetryAfter(time.Time) time.Duration { return time.Second }
