package instance

import (
	"errors"
	"fmt"

	"github.com/ember-run/ember/internal/api"
)

// State is where an instance is in its life. Only the moves in transitions
// are legal; Manager.setLocked refuses the others.
//
//	Starting ─→ Ready ─→ Draining ─→ Stopping ─→ Stopped
//	    │         │         │  ↑         ↑
//	    │         └─────────┼──┼─────────┘
//	    ├───────────────────┘  │
//	    └─→ Failed ←───────────┘ (from Starting, Ready or Draining)
type State uint8

// The states. The zero value is not a state: an instance is created
// Starting.
const (
	// Starting: the driver is bringing it up; it counts as capacity.
	Starting State = iota + 1
	// Ready: it takes requests.
	Ready
	// Draining: no longer wanted (an older version, or its function was
	// removed). It takes no new requests and is not capacity; a ready one
	// stops when its last request ends, a starting one is abandoned.
	Draining
	// Stopping: its process is being stopped.
	Stopping
	// Failed: its start failed or it exited on its own. Terminal; kept
	// for display (Options.KeepFailed).
	Failed
	// Stopped: stopped and forgotten. Terminal.
	Stopped
)

var stateNames = [...]string{Starting: "starting", Ready: "ready", Draining: "draining",
	Stopping: "stopping", Failed: "failed", Stopped: "stopped"}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// transitions lists the legal moves from each state.
var transitions = map[State][]State{
	Starting: {Ready, Draining, Stopping, Failed, Stopped},
	Ready:    {Draining, Stopping, Failed},
	Draining: {Stopping, Failed, Stopped},
	Stopping: {Stopped},
}

// ErrTransition is returned for a move the lifecycle does not allow.
var ErrTransition = errors.New("illegal instance state transition")

// transition checks the move from → to.
func transition(from, to State) error {
	for _, s := range transitions[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("%w: %s → %s", ErrTransition, from, to)
}

// over reports a terminal state: the instance has left its pool.
func (s State) over() bool { return s == Failed || s == Stopped }

// wasReady reports whether in ever became ready (a draining instance may
// not have).
func (in *Instance) wasReady() bool { return !in.readyAt.IsZero() }

// apiState is the state callers and observers see: draining is not a state
// of the API (a draining instance shows as stopping once it served, as
// starting before), and a stopped one is gone ("").
func (in *Instance) apiState() string {
	switch in.state {
	case Starting:
		return api.StateStarting
	case Ready:
		return api.StateReady
	case Draining:
		if in.wasReady() {
			return api.StateStopping
		}
		return api.StateStarting
	case Stopping:
		return api.StateStopping
	case Failed:
		return api.StateFailed
	}
	return ""
}

// setLocked moves in to state to, refusing (and logging) an illegal move;
// Manager.mu must be held. A move to a terminal state closes in.gone.
func (m *Manager) setLocked(in *Instance, to State) bool {
	if err := transition(in.state, to); err != nil {
		m.logger.Error("instance state", "instance", in.id, "function", in.fn, "err", err)
		return false
	}
	in.state = to
	if to.over() && in.gone != nil {
		close(in.gone)
	}
	return true
}
