package jobs

import (
	"context"
	"errors"

	"github.com/ember-run/ember/internal/api"
)

// leaseLoop claims jobs no worker holds every ClaimInterval (at once at
// start, and when poked), and renews this worker's leases every
// HeartbeatInterval, until ctx is done. Both are writes on the single
// writer, so they batch with everything else.
func (s *Service) leaseLoop(ctx context.Context) {
	hb := s.clock.NewTimer(s.opts.HeartbeatInterval)
	claim := s.clock.NewTimer(0)
	defer func() { hb.Stop(); claim.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C():
			s.heartbeat(ctx)
			hb = s.clock.NewTimer(s.opts.HeartbeatInterval)
		case <-claim.C():
			s.claim(ctx)
			claim = s.clock.NewTimer(s.opts.ClaimInterval)
		case <-s.claimPoke:
			claim.Stop()
			s.claim(ctx)
			claim = s.clock.NewTimer(s.opts.ClaimInterval)
		}
	}
}

func (s *Service) pokeClaim() {
	select {
	case s.claimPoke <- struct{}{}:
	default:
	}
}

// claim takes jobs no worker holds, as many as this worker has room for
// (MaxInFlight less the jobs it holds), and queues them.
func (s *Service) claim(ctx context.Context) {
	s.mu.Lock()
	n := min(s.opts.MaxInFlight-len(s.live), maxClaim)
	closing := s.closing
	s.mu.Unlock()
	if closing || n <= 0 {
		return
	}
	now := s.clock.Now()
	var recs []*Record
	err := s.write(ctx, func(tx Tx) (err error) {
		recs, err = tx.Claim(s.opts.WorkerID, now, now.Add(s.opts.LeaseDuration), n)
		return err
	})
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			s.log.Error("jobs: claim", "err", err)
		}
		return
	}
	if len(recs) > 0 {
		s.log.Info("jobs: claimed jobs no worker held", "count", len(recs))
	}
	for _, r := range recs {
		s.recover(r)
	}
	if len(recs) == n {
		s.pokeClaim() // there may be more
	}
}

// heartbeat renews this worker's leases, cancels the jobs another node
// asked to cancel and drops those whose lease another worker took.
func (s *Service) heartbeat(ctx context.Context) {
	// Only jobs held before the renewal are judged by it: a job enters
	// live after its insert or claim committed, so its lease is in the
	// store by the time Renew runs.
	s.mu.Lock()
	held := make(map[string]*job, len(s.live))
	for id, j := range s.live {
		held[id] = j
	}
	s.mu.Unlock()
	until := s.clock.Now().Add(s.opts.LeaseDuration)
	var leases []LeaseState
	err := s.write(ctx, func(tx Tx) (err error) {
		leases, err = tx.Renew(s.opts.WorkerID, until)
		return err
	})
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			s.log.Error("jobs: heartbeat", "err", err)
		}
		return
	}
	for _, l := range leases {
		j := held[l.ID]
		if j == nil {
			continue
		}
		j.mu.Lock()
		mine := j.rec.Lease.Token == l.Token
		j.mu.Unlock()
		if !mine {
			continue // left in held: lost
		}
		delete(held, l.ID)
		if l.CancelRequested {
			s.cancelJob(j, errUserCancel)
		}
	}
	// Not renewed: finished meanwhile (its state says so), or taken over.
	for _, j := range held {
		s.lose(j)
	}
}

// lose drops j, whose lease another worker holds now: its runner's request
// is cancelled and nothing more of it is written here.
func (s *Service) lose(j *job) {
	j.mu.Lock()
	switch j.state {
	case stateRunning:
		j.mu.Unlock()
		j.cancel(errLeaseLost) // the runner abandons it
	case stateQueued:
		j.state = stateFinishing
		j.mu.Unlock()
		s.abandon(j)
	default:
		j.mu.Unlock()
	}
}

// abandon removes j from this worker without a terminal write: another
// worker holds it. Waiters and streams then follow the record.
func (s *Service) abandon(j *job) {
	s.log.Warn("jobs: lease taken over by another worker; dropping the job here", "id", j.id)
	s.retire(j, errLeaseLost, func() { j.lost = true })
}

// retire ends job j on this worker: set (under j.mu) records how it ended,
// waiters and streams are woken, its context is cancelled with cause and
// it leaves the live set.
func (s *Service) retire(j *job, cause error, set func()) {
	j.mu.Lock()
	set()
	j.state = stateDone
	j.stopTimersLocked()
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
	close(j.done)
	j.cancel(cause)
	s.mu.Lock()
	if s.live[j.id] == j {
		delete(s.live, j.id)
	}
	s.mu.Unlock()
}

func (j *job) isLost() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lost
}

func isTerminal(status string) bool {
	switch status {
	case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
		return true
	}
	return false
}
