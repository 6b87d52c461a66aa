package instance

// Rollouts: a new version replaces the old one instance for instance (see
// the package doc).

// nextRolloutLocked starts the next instance of p's current version while
// outdated instances still serve and none of the current version is
// starting, unless starts are backing off or a budget holds the function at
// zero. It may go one above scaling.max (or a budget cap): an outdated
// instance leaves as each new one is ready. m.mu must be held; the caller
// launches the result.
func (m *Manager) nextRolloutLocked(p *pool) []*Instance {
	if m.closed || p.limit == 0 {
		return nil
	}
	if outdated, starting := rolloutProgressLocked(p); !outdated || starting > 0 || m.now().Before(p.nextStart) {
		return nil
	}
	if m.roomLocked() == 0 {
		return nil // the next reconcile retries once an instance has left
	}
	return []*Instance{m.newInstanceLocked(p, m.now())}
}

// rolloutProgressLocked reports whether outdated instances of p still serve, and
// how many of the current version are starting. m.mu must be held.
func rolloutProgressLocked(p *pool) (outdated bool, starting int) {
	for _, in := range p.instances {
		switch {
		case in.outdated && in.state == Ready:
			outdated = true
		case in.version == p.version && in.state == Starting:
			starting++
		}
	}
	return outdated, starting
}

// retireOutdatedLocked drains one outdated instance of p, now that an
// instance of the current version is ready: the idlest, so capacity moves
// over one for one. It returns it when it is idle, to stop now; a busy one
// stops when its last request ends. m.mu must be held.
func (m *Manager) retireOutdatedLocked(p *pool) []*Instance {
	var pick *Instance
	for _, in := range p.instances {
		if in.outdated && in.state == Ready && (pick == nil || in.inFlight < pick.inFlight) {
			pick = in
		}
	}
	if pick == nil {
		return nil
	}
	m.setLocked(pick, Draining)
	if pick.inFlight == 0 {
		return []*Instance{pick}
	}
	return nil
}
