package activator

import (
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

// The kinds clients see for Try's typed errors (errkind.Classify).

func (e *StartFailedError) ErrorKind() errkind.Kind { return errkind.Unavailable }
func (e *StartFailedError) ErrorCode() string       { return "start_failed" }

// RetryAfter is how long until the next start may be tried, at least a
// second.
func (e *StartFailedError) RetryAfter(now time.Time) time.Duration {
	return max(e.RetryAt.Sub(now), time.Second)
}

func (e *QueueFullError) ErrorKind() errkind.Kind { return errkind.Unavailable }
func (e *QueueFullError) ErrorCode() string       { return "queue_full" }

// RetryAfter: a full queue drains in about a second at typical rates.
func (e *QueueFullError) RetryAfter(time.Time) time.Duration { return time.Second }
