package eventually

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestTrueReturnsOnceCondHolds(t *testing.T) {
	var calls atomic.Int32
	True(t, 5*time.Second, time.Millisecond, "the third poll", func() bool { return calls.Add(1) >= 3 })
	if got, want := calls.Load(), int32(3); got != want {
		t.Errorf("cond called %d times, want %d", got, want)
	}
}

// fatalRecorder notes a Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestTrueFailsAfterDeadline(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	func() {
		defer func() {
			if r := recover(); r != rec {
				t.Fatalf("recovered %v, want the recorder's Fatalf", r)
			}
		}()
		True(rec, 10*time.Millisecond, time.Millisecond, "never", func() bool { return false })
	}()
	if rec.msg == "" {
		t.Error("True returned without failing for a condition that never holds")
	}
}
