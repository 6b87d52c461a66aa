package instance

import (
	"context"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// Touch records instance id's traffic at gateways in other processes (the
// leader controller hears it in their reports): inFlight requests over
// every gateway now, and when one last ended. Keep-warm expiry counts from
// the later of the local and remote last use, and never stops an instance
// while remote requests are in flight.
func (m *Manager) Touch(fn, id string, inFlight int, lastUsed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.byID[id]
	if in == nil || in.fn != fn {
		return
	}
	in.remote = max(inFlight, 0)
	now := m.now()
	switch {
	case in.remote > 0:
		in.idleSince = now // busy as of this report
	case in.inFlight == 0 && lastUsed.After(in.idleSince) && !lastUsed.After(now):
		in.idleSince = lastUsed
	}
}

// Adopt registers an instance the driver already runs (driver.Reclaim,
// when a controller gains leadership) as an instance of fn's current
// version, so a new leader serves and scales what the previous one
// started instead of starting duplicates. It reports false, adopting
// nothing, when fn is not deployed at that version or id is known.
//
// With await nil the instance is ready now. Otherwise it counts as
// starting, so it holds its place among fn's instances, until await
// returns: nil makes it ready, an error or fn's start_timeout is a failed
// start, and the instance is stopped. A Pod the previous leader left
// pulling a large image is waited for like any start, not stopped for
// being slow and started again beside its own leftover.
func (m *Manager) Adopt(fn string, version int64, id string, di driver.Instance, await func(context.Context) error) bool {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil || p.version != version || m.byID[id] != nil || m.closed {
		m.mu.Unlock()
		return false
	}
	now := m.now()
	if await != nil {
		in := &Instance{id: id, fn: fn, version: version, state: Starting, startedAt: now, gone: make(chan struct{}),
			adopt: &adoption{di: di, await: await}}
		in.startCtx, in.cancelStart = context.WithCancel(m.ctx)
		p.instances = append(p.instances, in)
		m.byID[id] = in
		m.mu.Unlock()
		m.launch([]*Instance{in})
		return true
	}
	in := &Instance{id: id, fn: fn, version: version, state: Ready, startedAt: now, readyAt: now,
		idleSince: now, drv: di, phases: di.Phases(), gone: make(chan struct{})}
	in.startCtx, in.cancelStart = context.WithCancel(m.ctx)
	p.instances = append(p.instances, in)
	m.byID[id] = in
	m.mu.Unlock()
	if o := m.opts.Observer; o != nil {
		o.StateChange(fn, id, "", api.StateReady, now)
	}
	logger := m.logger.With("function", fn, "instance", id)
	logger.Info("instance adopted")
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watch(in, di, logger)
	}()
	m.opts.Notify(fn)
	return true
}

// adoption is an adopted instance not yet known to be ready: start waits
// for it instead of starting one.
type adoption struct {
	di    driver.Instance
	await func(context.Context) error
}

// wait runs await and returns the instance once it passes. On failure
// the caller records the failure first, then stops the instance (abandon),
// which nothing else will: a graceful stop takes seconds, and until the
// failure is recorded the instance would count as starting.
func (a *adoption) wait(ctx context.Context) (driver.Instance, error) {
	if err := a.await(ctx); err != nil {
		return nil, err
	}
	return a.di, nil
}

// abandon stops the adopted instance.
func (a *adoption) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.di.Stop(ctx)
}

// tail is the adopted instance's last log lines, for a failed adoption.
func (a *adoption) tail() []string {
	if lt, ok := a.di.(driver.LogTailer); ok {
		return lt.Tail(20)
	}
	return nil
}
