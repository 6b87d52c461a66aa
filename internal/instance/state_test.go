package instance

import (
	"errors"
	"testing"
)

func TestTransitions(t *testing.T) {
	tests := []struct {
		from, to State
		ok       bool
	}{
		{Starting, Ready, true},
		{Starting, Draining, true},
		{Starting, Stopping, true},
		{Starting, Failed, true},
		{Starting, Stopped, true}, // forgotten before the driver ran
		{Ready, Draining, true},
		{Ready, Stopping, true},
		{Ready, Failed, true},
		{Draining, Stopping, true},
		{Draining, Failed, true},
		{Draining, Stopped, true},
		{Stopping, Stopped, true},

		{Ready, Starting, false},
		{Ready, Stopped, false}, // a ready instance is stopped, not forgotten
		{Draining, Ready, false},
		{Stopping, Ready, false},
		{Stopping, Failed, false}, // an exit while stopping is the stop's doing
		{Stopping, Draining, false},
		{Failed, Starting, false},
		{Failed, Stopped, false},
		{Stopped, Starting, false},
		{Stopped, Ready, false},
		{Ready, Ready, false},
		{0, Starting, false},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"→"+tt.to.String(), func(t *testing.T) {
			err := transition(tt.from, tt.to)
			if got := err == nil; got != tt.ok {
				t.Fatalf("transition(%s, %s) = %v, want ok=%v", tt.from, tt.to, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrTransition) {
				t.Errorf("err = %v, want ErrTransition", err)
			}
		})
	}
}
