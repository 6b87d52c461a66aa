// Package driver is the runtime contract between Ember and the things that
// run instances, in the manner of database/sql/driver: a minimal required
// interface plus optional capabilities that callers discover with a type
// assertion. Implementations live in driver/process, driver/onnx, ...
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
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

// StartSpec is everything a driver needs to start one instance. It is
// filled from the function's spec (instance.StartSpecFor), so a driver's
// Validate and its Start see the same thing.
type StartSpec struct {
	Function   string
	InstanceID string
	// Labels identify the instance to the runtime, so that a driver that
	// lists what it started (Lister) can tell whose it is.
	Labels Labels
	// Runtime names the kind of instance ("process", "onnx"); Task and
	// Model configure built-in runtimes.
	Runtime string
	Task    string
	Model   string
	// TaskOptions is a JSON object of the built-in runtime's task options
	// (text.*, batch.*), "" for none.
	TaskOptions string
	// Image is the OCI image of a container runtime; "" for host runtimes.
	Image string
	// Protocol is how Ember talks to the instance: "" or "http" (requests
	// forwarded as they are) or "cog" (spec.ProtocolCog: the driver
	// translates Ember's calls into Cog's predictions API).
	Protocol string
	// Port is the port the image listens on inside its network namespace
	// (container runtimes with their own network); 0 = the driver's default.
	Port int
	// Resources is what one instance occupies; a driver that cannot
	// enforce a limit treats it as a hint (process: metering only).
	Resources Resources
	// GPUDevices are the GPUs assigned to this instance (UUIDs, or
	// indexes), Resources.GPU.Count of them, by the server's allocator:
	// a process sees them as CUDA_VISIBLE_DEVICES, a container gets them
	// as an engine device request. Empty: no GPU is exposed.
	GPUDevices []string
	// Volumes are mounted into the instance's filesystem (container
	// runtimes); in spec order.
	Volumes []Volume
	// Command is the argv; ${PORT} is expanded by the driver.
	Command []string
	// Env is added to the instance's minimal base environment; PORT,
	// EMBER_FUNCTION, EMBER_INSTANCE (and, for the process driver, EMBER_READY_FD), which the driver sets, win.
	Env map[string]string
	// SecretEnv names secrets to add as variables (variable → secret
	// name); the driver resolves them at start, so their values live only
	// in the instance's environment.
	SecretEnv map[string]string
	Workdir   string
	// HealthPath is probed with GET until it answers 2xx.
	HealthPath string
	// HealthInterval caps the pause between readiness probes and
	// HealthTimeout bounds one probe (0: the driver's defaults).
	HealthInterval, HealthTimeout time.Duration
	// Output receives the instance's stdout and stderr (may be nil).
	Output io.Writer
	// OnPhase, if set, is called as each phase is reached (from the
	// driver's goroutine; it must not block).
	OnPhase func(Phase)
}

// Resources is what one instance occupies. Zero values mean "not set".
type Resources struct {
	CPU         float64 // cores, e.g. 0.5
	MemoryBytes int64
	GPU         GPU
}

// GPU is an accelerator request; Count 0 means none.
type GPU struct {
	Type   string // e.g. "a100-40gb", as written in the spec
	Count  int
	Shared bool // the GPUs may be shared with other Shared instances
}

// Volume is one mount. Exactly one of Name (a runtime-managed volume: an
// engine volume, a PersistentVolumeClaim) and HostPath is set.
type Volume struct {
	Name      string
	HostPath  string
	MountPath string // absolute path inside the instance
	ReadOnly  bool
}

// Label keys under which Labels are written to a runtime that keeps
// string labels (container labels, Pod labels).
const (
	LabelFunction = "ember.run/function"
	LabelVersion  = "ember.run/version"
	LabelInstance = "ember.run/instance"
)

// Labels say which function, version and instance a running instance
// belongs to.
type Labels struct {
	Function string
	Version  int64 // the function's spec version (1, 2, ...)
	Instance string
}

// Map renders l as runtime labels. Function names may hold a "/"
// (owner/name), which Kubernetes label values refuse; a kube driver
// encodes it itself.
func (l Labels) Map() map[string]string {
	return map[string]string{
		LabelFunction: l.Function,
		LabelVersion:  strconv.FormatInt(l.Version, 10),
		LabelInstance: l.Instance,
	}
}

// ParseLabels reads labels written by Map; ok is false when any is
// missing or malformed, i.e. the thing listed is not one of Ember's.
func ParseLabels(m map[string]string) (l Labels, ok bool) {
	v, err := strconv.ParseInt(m[LabelVersion], 10, 64)
	l = Labels{Function: m[LabelFunction], Version: v, Instance: m[LabelInstance]}
	return l, err == nil && v > 0 && l.Function != "" && l.Instance != ""
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

// Validator is implemented by drivers that can say, before anything is
// stored or started, that they cannot run a spec. It is called at deploy
// with the StartSpec the spec would start (without per-instance fields:
// InstanceID, Labels.Instance, Output, OnPhase). The error joins
// *FieldError values, one per spec field at fault, so the caller can
// report them with the spec's own validation errors.
type Validator interface {
	Validate(s StartSpec) error
}

// FieldError names the spec field a driver cannot run and why, e.g.
// "image: the process runtime runs host commands; use runtime: container
// for images".
type FieldError struct {
	Field  string // the spec's field path: "image", "volumes", "task"
	Reason string
	Err    error // the cause, if any (an OS error: errors.Is(err, fs.ErrNotExist))
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func (e *FieldError) Unwrap() error { return e.Err }

// CapabilityReporter is implemented by drivers that say what they do
// beyond Start; CapabilitiesOf supplies the default for the others.
type CapabilityReporter interface {
	Capabilities() Capabilities
}

// Capabilities say what a driver does beyond Start.
type Capabilities struct {
	// OwnsReadiness: Start returns only once the instance answered its
	// health check (the process driver probes it over loopback). When
	// false, Start returns once the instance has an address and the
	// caller must probe HealthPath before routing to it (a Pod whose IP
	// the gateway probes).
	OwnsReadiness bool
}

// CapabilitiesOf returns d's capabilities; a driver that does not report
// them is one written to the original contract, in which Start returns a
// ready instance.
func CapabilitiesOf(d Driver) Capabilities {
	if c, ok := d.(CapabilityReporter); ok {
		return c.Capabilities()
	}
	return Capabilities{OwnsReadiness: true}
}

// Prewarmer is implemented by drivers that can do part of a start ahead
// of demand: the container driver creates a function's next container (not
// started) while the function is at zero, so the cold start skips the
// engine's create. The caller picks the instance id (StartSpec.InstanceID)
// before Prewarm; a later Start with the same id and an equal spec takes
// the prewarmed resources over, and one whose spec differs (a secret
// changed) discards them and starts afresh. The caller calls Discard for
// every Prewarm that no Start took over.
type Prewarmer interface {
	// Prewarms reports whether Prewarm can help s (no GPU function: its
	// devices are assigned only at start). Cheap; no I/O.
	Prewarms(s StartSpec) bool
	// Prewarm prepares s's instance without starting it.
	Prewarm(ctx context.Context, s StartSpec) error
	// Discard releases what Prewarm prepared for s's instance, if a Start
	// did not take it over.
	Discard(ctx context.Context, s StartSpec)
}

// PhasePrewarmed marks a start that took over prewarmed resources: it
// comes right before the phases that were done ahead (the container's
// "created"), which then take ~0.
const PhasePrewarmed = "prewarmed"

// Listed is an instance a driver finds running that it started earlier,
// possibly in an earlier life of the server or on another node.
type Listed struct {
	Labels Labels
	// Handle is the driver's own name for it (container id, Pod name),
	// opaque to callers and passed back to Adopt.
	Handle string
	// Addr is where it serves HTTP, "" if it has none yet.
	Addr string
}

// Lister is implemented by drivers whose instances can outlive the
// server (containers, Pods), so that a restarted server or a new leader
// finds what was started before instead of starting it twice or leaking
// it. List returns only instances carrying Ember's labels.
type Lister interface {
	List(ctx context.Context) ([]Listed, error)
}

// Adopter takes over a listed instance: the returned Instance is as if
// Start had returned it (Done, Err and Stop work; Phases may be empty).
type Adopter interface {
	Adopt(ctx context.Context, l Listed) (Instance, error)
}

// ConnHandoff is implemented by instances whose driver's readiness probe
// kept its connection to the instance open (HTTP keep-alive): the caller
// may send the first request on it instead of dialing a new one, which
// saves a connect, an accept and a fresh connection's first-read costs in
// the instance on every cold start.
type ConnHandoff interface {
	// TakeConn returns the probe's connection once, idle and clean (its
	// last response read to the end, nothing buffered behind it); nil
	// when there is none or it was taken. The caller owns it: it must
	// check that the instance has not closed it before writing on it.
	TakeConn() net.Conn
}

// Parker is implemented by instances that can stay loaded after their
// function scales to zero (the onnx driver's loaded pool): Park is called
// instead of Stop, and when it returns true the driver keeps the instance
// for its function's next start, for at most keep, as a warm state of the
// function (metered to it, bounded by the driver), and stops it after.
// The instance counts as stopped to the caller: Done closes at once.
type Parker interface {
	Park(keep time.Duration) bool
}

// Releaser is implemented by drivers that keep parked instances: Release
// stops those of fn (its budget forces it to zero, it was redeployed or
// deleted).
type Releaser interface {
	Release(fn string)
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

// SecretSource resolves a secret's value by name (store/sqlite).
type SecretSource interface {
	SecretValue(ctx context.Context, name string) (value []byte, ok bool, err error)
}

// ResolveSecrets reads the secrets refs names (env name → secret name) as
// NAME=value entries, sorted by name, for a driver's Start. A missing
// secret or store is a *StartError naming the variable and the secret,
// never the value.
func ResolveSecrets(ctx context.Context, src SecretSource, refs map[string]string) ([]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(refs))
	for _, k := range slices.Sorted(maps.Keys(refs)) {
		name := refs[k]
		if src == nil {
			return nil, &StartError{Reason: fmt.Sprintf("env %s: secret %q: this server has no secret store", k, name)}
		}
		v, ok, err := src.SecretValue(ctx, name)
		switch {
		case err != nil:
			return nil, &StartError{Reason: fmt.Sprintf("env %s: cannot read secret %q", k, name), Err: err}
		case !ok:
			return nil, &StartError{Reason: fmt.Sprintf("env %s: secret %q does not exist (ember secrets set %s)", k, name, name)}
		}
		out = append(out, k+"="+string(v))
	}
	return out, nil
}
