// Package driver is the runtime contract between Ember and the things that
// run instances, in the manner of database/sql/driver: a minimal required
// interface plus optional capabilities that callers discover with a type
// assertion. Implementations live in driver/process, driver/onnx, ...
package driver

import (
	"context"
	"errors"
	"io"
	"time"
)

// Standard phase names, in the order an instance passes them. Drivers may
// report finer phases between PhaseSpawned and PhaseReady.
const (
	PhaseSpawned   = "spawned"   // the runtime accepted the start (process forked)
	PhaseListening = "listening" // the instance's port accepts TCP connections
	PhaseReady     = "ready"     // the readiness check passed
)

// Phase is one timestamped step of an instance's start.
type Phase struct {
	Name string
	At   time.Time
}

// StartSpec is everything a driver needs to start one instance.
type StartSpec struct {
	Function   string
	InstanceID string
	// Runtime names the kind of instance ("process", "onnx"); Task and
	// Model configure built-in runtimes.
	Runtime string
	Task    string
	Model   string
	// Command is the argv; ${PORT} is expanded by the driver.
	Command []string
	// Env is added to the instance's minimal base environment; PORT,
	// EMBER_FUNCTION and EMBER_INSTANCE, which the driver sets, win.
	Env map[string]string
	// SecretEnv names secrets to add as variables (variable → secret
	// name); the driver resolves them at start, so their values live only
	// in the instance's environment.
	SecretEnv map[string]string
	Workdir   string
	// HealthPath is probed with GET until it answers 2xx.
	HealthPath string
	// Output receives the instance's stdout and stderr (may be nil).
	Output io.Writer
	// OnPhase, if set, is called as each phase is reached (from the
	// driver's goroutine; it must not block).
	OnPhase func(Phase)
}

// Driver starts instances.
type Driver interface {
	// Start starts an instance and returns once it is ready, or with an
	// error that says why it is not (exit status, last log lines). The
	// start is abandoned, and anything started is stopped, when ctx ends.
	Start(ctx context.Context, s StartSpec) (Instance, error)
}

// Instance is one running, ready instance.
type Instance interface {
	// Addr is the host:port that serves HTTP.
	Addr() string
	// Phases lists the start phases reached, in order.
	Phases() []Phase
	// Done is closed when the instance has exited.
	Done() <-chan struct{}
	// Err says why the instance exited; valid after Done is closed.
	Err() error
	// Stop asks the instance to exit and waits for it; when ctx ends first
	// it is killed.
	Stop(ctx context.Context) error
}

// LogTailer is implemented by instances that keep their last output lines.
type LogTailer interface {
	Tail(n int) []string
}

// ErrExited is wrapped by errors that report an instance that exited.
var ErrExited = errors.New("instance exited")

// StartError reports a failed start with the evidence a user needs.
type StartError struct {
	Reason string   // e.g. "exited with status 1 before ready"
	Tail   []string // last log lines
	Err    error
}

func (e *StartError) Error() string {
	msg := e.Reason
	if len(e.Tail) > 0 {
		msg += "; last output: " + e.Tail[len(e.Tail)-1]
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }
