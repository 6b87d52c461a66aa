package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Stream reads a prediction's events in order: everything from the start
// (or after Last-Event-ID) first, then live events until done.
type Stream struct {
	j     *job    // nil for a finished job
	fixed []Event // a finished job's events
	after int64
}

// Subscribe opens a stream of id's events with IDs greater than
// lastEventID (0 replays from the start).
func (s *Service) Subscribe(ctx context.Context, id string, lastEventID int64) (*Stream, error) {
	lastEventID = max(lastEventID, 0)
	if j := s.liveJob(id); j != nil {
		return &Stream{j: j, after: lastEventID}, nil
	}
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.expired(r, time.Now()); err != nil {
		return nil, err
	}
	st := &Stream{after: lastEventID}
	if len(r.Events) > 0 {
		if err := json.Unmarshal(r.Events, &st.fixed); err != nil {
			return nil, fmt.Errorf("prediction %s: stored events: %w", id, err)
		}
	}
	return st, nil
}

// Next returns the next event, io.EOF after the last one (done), or ctx's
// error.
func (st *Stream) Next(ctx context.Context) (Event, error) {
	for {
		var evs []Event
		var changed chan struct{}
		ended := true
		if st.j == nil {
			evs = st.fixed
		} else {
			st.j.mu.Lock()
			evs, changed, ended = st.j.events, st.j.changed, st.j.state == stateDone
			st.j.mu.Unlock()
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
