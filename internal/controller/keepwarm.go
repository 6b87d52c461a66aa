package controller

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/keepalive"
	"github.com/ember-run/ember/internal/spec"
)

// KeepWarm wires the learned keep-warm policy (scaling.idle_timeout: auto).
// Every field is optional.
type KeepWarm struct {
	// Config tunes the policy (keepalive defaults when zero).
	Config keepalive.Config
	// Prices returns the function's idle price, measured cold start and the
	// value of a cold start; nil turns the price check off.
	Prices func(f *spec.Function) keepalive.Prices
	// Observer receives the policy's counters (telemetry).
	Observer KeepWarmObserver
	// Store keeps each function's idle-time histogram across restarts.
	Store KeepWarmStore
	// SaveEvery bounds how often a changed histogram is written (default
	// 10s); Run writes what is left when it stops.
	SaveEvery time.Duration
	// DefaultIdle, if set, is the idle_timeout of a function deployed
	// without one (--default-idle-timeout): a duration or spec.IdleAuto.
	DefaultIdle *spec.Duration
}

// KeepWarmObserver counts what the learned policy does.
type KeepWarmObserver interface {
	// Arrival is a request after an idle gap: predicted when the gap fell
	// inside the policy's window, warm when an instance it kept served it.
	Arrival(fn string, predicted, warm bool)
	// IdleSeconds are instance-seconds spent idle under the policy.
	IdleSeconds(fn string, s float64)
}

// KeepWarmStore persists histograms (JSON) by function.
type KeepWarmStore interface {
	LoadKeepWarm(ctx context.Context) (map[string][]byte, error)
	// SaveKeepWarm writes state, or deletes the row when state is nil.
	SaveKeepWarm(ctx context.Context, fn string, state []byte, now time.Time) error
}

// learner is one auto function's policy state. Guarded by function.apply.
type learner struct {
	hist                         keepalive.Histogram
	windows                      keepalive.Windows
	busy                         bool
	idleSince                    time.Time // end of the last busy period; zero until one is seen
	lastTick                     time.Time
	dirty                        bool // histogram changed since the last save
	arrivals, predicted, avoided int64
}

// observe updates l with one decision's view of demand and returns the
// minimum the policy asks for now (0 or 1).
func (c *Controller) observe(name string, l *learner, f *spec.Function, now time.Time, busy bool, live int) int {
	kw := c.opts.KeepWarm
	if busy && !l.busy {
		if !l.idleSince.IsZero() {
			gap := now.Sub(l.idleSince)
			predicted := l.windows.Predicted(gap)
			warm := live > 0 && f.Scaling.EffectiveMin(now) == 0
			l.arrivals++
			if predicted {
				l.predicted++
			}
			if warm {
				l.avoided++
			}
			if kw.Observer != nil {
				kw.Observer.Arrival(name, predicted, warm)
			}
			l.hist.Add(gap)
			l.dirty = true
			c.choose(l, f)
		}
	}
	if !busy && l.busy {
		l.idleSince = now
	}
	l.busy = busy
	if !busy && live > 0 && !l.lastTick.IsZero() && kw.Observer != nil {
		kw.Observer.IdleSeconds(name, now.Sub(l.lastTick).Seconds()*float64(live))
	}
	l.lastTick = now
	if busy || l.idleSince.IsZero() {
		return 0
	}
	if l.windows.Warm(now.Sub(l.idleSince)) {
		return 1
	}
	return 0
}

func (c *Controller) choose(l *learner, f *spec.Function) {
	var pr keepalive.Prices
	if p := c.opts.KeepWarm.Prices; p != nil {
		pr = p(f)
	}
	l.windows = keepalive.Choose(&l.hist, c.opts.KeepWarm.Config, pr)
}

// KeepWarmStatus returns an auto function's learned windows and counters.
func (c *Controller) KeepWarmStatus(name string) (*api.KeepWarm, bool) {
	c.mu.Lock()
	fn := c.funcs[name]
	c.mu.Unlock()
	if fn == nil {
		return nil, false
	}
	fn.apply.Lock()
	defer fn.apply.Unlock()
	l := fn.learn
	if l == nil {
		return nil, false
	}
	w := l.windows
	return &api.KeepWarm{
		PreWarmS: w.PreWarm.Seconds(), KeepAliveS: w.KeepAlive.Seconds(), Samples: w.Samples,
		HeadS: w.Head.Seconds(), TailS: w.Tail.Seconds(), CV: w.CV, Fallback: w.Fallback, Reason: w.Reason,
		Arrivals: l.arrivals, Predicted: l.predicted, Avoided: l.avoided,
	}, true
}

// learnerFor returns fn's learner when its spec is auto (creating it), and
// drops it otherwise. fn.apply must be held.
func (c *Controller) learnerFor(fn *function) *learner {
	if !fn.spec.Scaling.IdleTimeout.Auto() {
		fn.learn = nil
		return nil
	}
	if fn.learn == nil {
		fn.learn = &learner{}
		if st, ok := c.restored[fn.spec.Name]; ok {
			if err := json.Unmarshal(st, &fn.learn.hist); err != nil {
				c.logger.Warn("stored keep-warm histogram unreadable; learning afresh", "function", fn.spec.Name, "err", err)
			}
			delete(c.restored, fn.spec.Name)
		}
		c.choose(fn.learn, fn.spec)
	}
	return fn.learn
}

// loadKeepWarm reads stored histograms; learners pick them up when their
// function first decides.
func (c *Controller) loadKeepWarm(ctx context.Context) error {
	st := c.opts.KeepWarm.Store
	if st == nil {
		return nil
	}
	m, err := st.LoadKeepWarm(ctx)
	if err != nil {
		return err
	}
	c.restored = m
	return nil
}

// saveKeepWarm writes changed histograms, at most every SaveEvery unless
// force (shutdown).
func (c *Controller) saveKeepWarm(ctx context.Context, now time.Time, force bool) {
	st := c.opts.KeepWarm.Store
	if st == nil {
		return
	}
	every := c.opts.KeepWarm.SaveEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	if !force && now.Sub(c.lastSave) < every {
		return
	}
	c.lastSave = now
	c.mu.Lock()
	fns := make([]*function, 0, len(c.funcs))
	for _, fn := range c.funcs {
		fns = append(fns, fn)
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn.apply.Lock()
		var state []byte
		var name string
		if l := fn.learn; l != nil && l.dirty {
			b, err := json.Marshal(&l.hist)
			if err == nil {
				state, name = b, fn.spec.Name
				l.dirty = false
			}
		}
		fn.apply.Unlock()
		if state == nil {
			continue
		}
		if err := st.SaveKeepWarm(ctx, name, state, now); err != nil {
			c.logger.Warn("keep-warm histogram not saved", "function", name, "err", err)
		}
	}
}
