package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// Stream reads a prediction's events in order: everything from the start
// (or after Last-Event-ID) first, then live events until done. A job this
// worker holds streams its events as they happen; one held elsewhere is
// read from its record every PollInterval, and its events (persisted at
// completion) follow once it is terminal.
type Stream struct {
	s     *Service
	id    string
	j     *job    // the job held here; nil otherwise
	fixed []Event // a finished job's events
	poll  bool    // the job runs elsewhere: wait for its record to be terminal
	after int64
}

// Subscribe opens a stream of id's events with IDs greater than
// lastEventID (0 replays from the start).
func (s *Service) Subscribe(ctx context.Context, id string, lastEventID int64) (*Stream, error) {
	st := &Stream{s: s, id: id, after: max(lastEventID, 0)}
	if j := s.liveJob(id); j != nil {
		st.j = j
		return st, nil
	}
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.expired(r, s.clock.Now()); err != nil {
		return nil, err
	}
	return st, st.load(r)
}

// load takes r's events when it is terminal, else polls for it.
func (st *Stream) load(r *Record) error {
	st.poll = !isTerminal(r.Status)
	if st.poll || len(r.Events) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Events, &st.fixed); err != nil {
		return fmt.Errorf("prediction %s: stored events: %w", st.id, err)
	}
	return nil
}

// Next returns the next event, io.EOF after the last one (done), or ctx's
// error.
func (st *Stream) Next(ctx context.Context) (Event, error) {
	for {
		if st.poll {
			if err := st.pollRecord(ctx); err != nil {
				return Event{}, err
			}
			continue
		}
		var evs []Event
		var changed chan struct{}
		ended := true
		if st.j == nil {
			evs = st.fixed
		} else {
			st.j.mu.Lock()
			evs, changed, ended = st.j.events, st.j.changed, st.j.state == stateDone
			lost := st.j.lost
			st.j.mu.Unlock()
			if lost {
				st.j, st.poll = nil, true // another worker runs it now
				continue
			}
		}
		// Event IDs are 1..n in order, so the next one is at index after.
		if st.after < int64(len(evs)) {
			e := evs[st.after]
			st.after = e.ID
			return e, nil
		}
		if ended {
			return Event{}, io.EOF
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// pollRecord waits PollInterval and reads the job's record again (or
// follows the job if this worker has claimed it meanwhile).
func (st *Stream) pollRecord(ctx context.Context) error {
	if j := st.s.liveJob(st.id); j != nil {
		st.j, st.poll = j, false
		return nil
	}
	t := st.s.clock.NewTimer(st.s.opts.PollInterval)
	select {
	case <-t.C():
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
	r, err := st.s.store.Get(ctx, st.id)
	if err != nil {
		return err
	}
	return st.load(r)
}
