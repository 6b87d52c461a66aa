// Package eventually waits, in tests, for something another goroutine or
// process brings about: it polls a condition until it holds or a deadline
// passes. Polling with a deadline is how tests wait for real processes;
// logic with timers uses an injected clock or testing/synctest instead.
package eventually

import (
	"testing"
	"time"
)

// True polls cond every poll until it returns true, failing t with
// "timed out after d waiting for what" once d has passed. Pick poll by
// what cond costs: a field read can be polled every millisecond, an HTTP
// request to the server under test every few tens.
func True(t testing.TB, d, poll time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(poll) // polling a condition with a deadline
	}
}
