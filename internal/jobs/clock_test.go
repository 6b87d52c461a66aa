package jobs_test

import (
	"slices"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/jobs"
)

// fakeClock is a jobs.Clock that moves only when Advance is called; its
// timers fire then, in order of their deadlines.
type fakeClock struct {
	mu     sync.Mutex // guards the following
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	ch   chan time.Time // NewTimer timers
	f    func()         // AfterFunc timers
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) jobs.Timer { return c.add(d, nil) }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) jobs.Timer { return c.add(d, f) }

func (c *fakeClock) add(d time.Duration, f func()) *fakeTimer {
	c.mu.Lock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	if f == nil {
		t.ch = make(chan time.Time, 1)
	}
	if d > 0 {
		c.timers = append(c.timers, t)
		c.mu.Unlock()
		return t
	}
	t.done = true
	now := c.now
	c.mu.Unlock()
	t.fire(now)
	return t
}

// Advance moves the clock on by d and fires the timers now due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(now) {
			return false
		}
		t.done = true
		due = append(due, t)
		return true
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.fire(now)
	}
}

// armed reports whether a timer is due exactly d from now. A loop that
// re-arms its timer on its own goroutine after each tick has done so once
// this is true; an Advance before that would pass with nothing to fire.
func (c *fakeClock) armed(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.now.Add(d)
	for _, t := range c.timers {
		if t.at.Equal(at) {
			return true
		}
	}
	return false
}

func (t *fakeTimer) fire(now time.Time) {
	if t.f != nil {
		go t.f()
		return
	}
	t.ch <- now // buffered, and a timer fires once
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(x *fakeTimer) bool { return x == t })
	return true
}
