package instance

import (
	"sync"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// TryAcquire takes a slot on the ready instance of fn with the fewest
// requests in flight, never above the spec's concurrency. release must be
// called exactly once when the request ends.
func (m *Manager) TryAcquire(fn string) (id, addr string, readyAt time.Time, release func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return "", "", time.Time{}, nil, false
	}
	limit := p.fn.Scaling.Concurrency
	var best *Instance
	for _, in := range p.instances {
		if in.state != Ready || (limit > 0 && in.inFlight >= limit) {
			continue
		}
		if exited(in.drv) {
			// Dead, and its watcher has not marked it failed yet: a
			// request sent there would fail for nothing.
			continue
		}
		if best == nil || in.inFlight < best.inFlight {
			best = in
		}
	}
	if best == nil {
		return "", "", time.Time{}, nil, false
	}
	best.inFlight++
	best.served++
	if best.inFlight == 1 {
		best.idleSince = time.Time{}
		if o := m.opts.Observer; o != nil {
			o.Busy(fn, best.id, true, m.now())
		}
	}
	var once sync.Once
	in := best
	return in.id, in.drv.Addr(), in.readyAt, func() { once.Do(func() { m.release(in) }) }, true
}

func (m *Manager) release(in *Instance) {
	m.mu.Lock()
	in.inFlight--
	idle := in.inFlight == 0
	var stop bool
	if idle {
		now := m.now()
		in.idleSince = now
		stop = in.state == Draining
		if o := m.opts.Observer; o != nil {
			o.Busy(in.fn, in.id, false, now)
		}
	}
	_, removed := m.pools[in.fn]
	m.mu.Unlock()
	if stop {
		why := "replaced by a new version"
		if !removed {
			why = "function removed"
		}
		m.stopAsync(in, why)
	}
	m.opts.Notify(in.fn)
}

// exited reports, without waiting, whether di's process has ended.
func exited(di driver.Instance) bool {
	if di == nil {
		return false
	}
	select {
	case <-di.Done():
		return true
	default:
		return false
	}
}
