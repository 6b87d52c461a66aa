// Package process runs instances as local child processes: one process group
// per instance, a free loopback port passed in as $PORT, a readiness probe with
// tight exponential backoff, and a ring buffer of the instance's last output.
//
// Instances never outlive the server. A graceful stop signals the whole
// process group (the instance and anything it forked). If the server itself
// dies, even by SIGKILL, the kernel sends the instance SIGKILL through
// PR_SET_PDEATHSIG.
//
// Linux caveat: the parent-death signal fires when the OS thread that forked
// the child exits, not when the process does. The Go runtime keeps its
// threads for the life of the process, with one exception: a goroutine that
// exits while locked to its thread (runtime.LockOSThread) takes the thread
// with it. A caller of Start might be such a goroutine, so the fork runs on
// the instance's own reaper goroutine, which is never locked; its thread
// lives until the server exits. Grandchildren get no parent-death signal of
// their own: a server killed by SIGKILL takes down the instance, but
// children the instance forked survive unless the instance stops them.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// Options configures a Driver. The zero value gives the defaults.
type Options struct {
	// ProbeInitial is the first pause between readiness probes; it doubles
	// after each failed probe up to ProbeMax. Default 200µs. Small values
	// cost little (a probe is a loopback connect) and cut cold-start lag.
	ProbeInitial time.Duration
	// ProbeMax caps the pause between probes, and so bounds how late a
	// long start is noticed. Default 3ms: about 330 cheap loopback probes a
	// second while an instance loads, and readiness seen within ~3 ms.
	ProbeMax time.Duration
	// ProbeTimeout bounds one health request, for a server that accepts
	// connections but does not answer. Default 1s; a spec's
	// health.timeout overrides it.
	ProbeTimeout time.Duration
	// ProbeTight is how long, from the start of each phase (port, then
	// health), probes stay at most ProbeMax apart; after it the pause
	// grows with the time waited (see nextProbePause). Default 20ms.
	ProbeTight time.Duration
	// ProbeInterval caps the pause once probing has backed off, so a long
	// model load writes few probe lines; a spec's health.interval
	// overrides it. Default 2s.
	ProbeInterval time.Duration
	// ListenTable checks whether a starting instance listens in the
	// kernel's socket table (Linux; elsewhere, or where netlink is
	// refused, it falls back to a TCP connect, the default). It never
	// touches the instance, but one check costs Ember about 3× a failed
	// connect (BenchmarkListenCheck: 92 against 30 µs on a loaded 2-core
	// VM; the kernel walks its whole listening hash), so it is off.
	ListenTable bool
	// Host is the address instances listen on and are reached at.
	// Default "127.0.0.1".
	Host string
	// Env is the base environment of every instance, before the
	// StartSpec's variables and the driver's own. Nil means
	// BaseEnv(os.Environ(), nil) at New: never the server's whole
	// environment, which holds its credentials.
	Env []string
	// Secrets resolves StartSpec.SecretEnv at each start (nil: a spec
	// that names a secret cannot start).
	Secrets SecretSource
	// Guard, if set, kills each instance's whole process group when the
	// server dies, which Pdeathsig alone does not (see Guard).
	Guard *Guard
}

// SecretSource resolves a secret's value by name (store/sqlite).
type SecretSource = driver.SecretSource

// Default option values.
const (
	DefaultProbeInitial  = 200 * time.Microsecond
	DefaultProbeMax      = 3 * time.Millisecond
	DefaultProbeTimeout  = time.Second
	DefaultProbeTight    = 20 * time.Millisecond
	DefaultProbeInterval = 2 * time.Second
	DefaultHost          = "127.0.0.1"
)

// tailOnFailure is how many output lines a StartError carries.
const tailOnFailure = 20

// Driver starts instances as local processes. It is safe for concurrent use.
type Driver struct {
	logger *slog.Logger
	opts   Options
	// listenTable: check a starting instance's port in the kernel's
	// socket table (Options.ListenTable, Linux); false once that failed.
	listenTable atomic.Bool

	ports driver.Ports // ports handed to instances that have not exited

	notifiers notifiers // versions whose last instance said READY=1
}

// New returns a Driver. A nil logger discards logs.
func New(logger *slog.Logger, opts Options) *Driver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProbeInitial <= 0 {
		opts.ProbeInitial = DefaultProbeInitial
	}
	if opts.ProbeMax <= 0 {
		opts.ProbeMax = DefaultProbeMax
	}
	opts.ProbeMax = max(opts.ProbeMax, opts.ProbeInitial)
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	if opts.ProbeTight <= 0 {
		opts.ProbeTight = DefaultProbeTight
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	opts.ProbeInterval = max(opts.ProbeInterval, opts.ProbeMax)
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Env == nil {
		opts.Env = BaseEnv(os.Environ(), nil)
	}
	d := &Driver{
		logger: logger,
		opts:   opts,
	}
	d.listenTable.Store(listenTableSupported && opts.ListenTable)
	return d
}

// Start starts an instance and returns once its health check passes. On
// failure it returns a *driver.StartError that says why (exit status, last
// output lines); when ctx ends first, the process group is killed and the
// StartError wraps ctx.Err().
func (d *Driver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	// Deploy validated the spec; this catches a caller that did not (a
	// spec stored before a rule existed), so an image is never silently
	// dropped in favour of running a host command.
	if err := d.Validate(s); err != nil {
		return nil, &driver.StartError{Reason: strings.ReplaceAll(err.Error(), "\n", "; "), Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &driver.StartError{Reason: "not started: " + err.Error(), Err: err}
	}
	secrets, err := d.resolveSecrets(ctx, s.SecretEnv)
	if err != nil {
		return nil, err
	}
	port, err := d.reservePort()
	if err != nil {
		return nil, &driver.StartError{Reason: "no free port", Err: err}
	}
	portStr := strconv.Itoa(port)
	expand := func(v string) string { return strings.ReplaceAll(v, "${PORT}", portStr) }

	args := make([]string, len(s.Command))
	for i, a := range s.Command {
		args[i] = expand(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = s.Workdir
	cmd.Env = d.environ(s, secrets, portStr, expand)
	// Setpgid puts the instance in its own group, so Stop reaches what it
	// forks; on Linux, Pdeathsig kills it if the server dies (see the
	// package doc); elsewhere only the guard does.
	cmd.SysProcAttr = sysProcAttr()

	// stdout and stderr share one pipe, so lines keep their order.
	r, w, err := os.Pipe()
	if err != nil {
		d.releasePort(port)
		return nil, &driver.StartError{Reason: "cannot create output pipe", Err: err}
	}
	cmd.Stdout, cmd.Stderr = w, w
	readyR, readyW, err := newReadyPipe()
	if err != nil {
		r.Close()
		w.Close()
		d.releasePort(port)
		return nil, &driver.StartError{Reason: "cannot create readiness pipe", Err: err}
	}
	cmd.ExtraFiles = []*os.File{readyW} // ReadyFD in the child

	inst := &Instance{
		function:   s.Function,
		id:         s.InstanceID,
		addr:       net.JoinHostPort(d.opts.Host, portStr),
		onPhase:    s.OnPhase,
		done:       make(chan struct{}),
		outputSeen: make(chan struct{}, 1),
		outPace:    newPacer(),
		logs:       newRing(ringLines),
		output:     &switchWriter{w: s.Output},
		guard:      d.opts.Guard,
	}
	started := make(chan error, 1)
	go inst.run(cmd, r, w, inst.output, started, func() { d.releasePort(port) })
	err = <-started
	readyW.Close() // the child holds its own copy; ours would keep the pipe open
	if err != nil {
		readyR.Close()
		return nil, &driver.StartError{Reason: "cannot start " + args[0] + ": " + osReason(err), Err: err}
	}
	version := notifierKey(s)
	spawned := time.Now()
	notified := watchReady(readyR, inst.done, func() { d.notifiers.learn(version, time.Since(spawned)) })
	inst.phase(driver.PhaseSpawned)
	logger := d.logger.With("instance", inst)
	logger.Debug("instance spawned")

	hold := d.notifiers.hold(version)
	byNotice, err := d.awaitReady(ctx, inst, s.HealthPath, d.cadence(s), notified, hold)
	if err == nil && hold > 0 && !byNotice {
		select {
		case <-notified:
		default:
			d.notifiers.forget(version) // late and silent: probe it from the start next time
		}
	}
	if err != nil {
		inst.kill()
		<-inst.done // the reaper has collected the process and its output
		var se *driver.StartError
		if errors.As(err, &se) {
			se.Tail = inst.Tail(tailOnFailure)
		}
		logger.Debug("instance failed to start", "err", err)
		return nil, err
	}
	logger.Debug("instance ready", "phases", inst.Phases())
	inst.outPace.ready.Store(true)
	return inst, nil
}

// environ builds the instance's environment: the base, then the spec's
// variables and secrets, then the driver's own, which a spec cannot
// override (spec validation refuses them too). exec keeps the last value
// of a duplicated name.
func (d *Driver) environ(s driver.StartSpec, secrets []string, port string, expand func(string) string) []string {
	env := make([]string, 0, len(d.opts.Env)+len(s.Env)+len(secrets)+4)
	env = append(env, d.opts.Env...)
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+expand(s.Env[k]))
	}
	env = append(env, secrets...)
	if len(s.GPUDevices) > 0 {
		// The GPUs the allocator assigned, by UUID (stable whatever
		// order CUDA enumerates in); it wins over a spec's own value.
		env = append(env, "CUDA_VISIBLE_DEVICES="+strings.Join(s.GPUDevices, ","))
	}
	return append(env,
		"PORT="+port,
		"EMBER_FUNCTION="+s.Function,
		"EMBER_INSTANCE="+s.InstanceID,
		readyFDEnv(),
	)
}

func (d *Driver) resolveSecrets(ctx context.Context, refs map[string]string) ([]string, error) {
	return driver.ResolveSecrets(ctx, d.opts.Secrets, refs)
}

// BaseEnv is the environment every instance starts from: the variables of
// environ (the server's, as os.Environ gives it) named PATH, HOME, LANG or
// TZ, or listed in inherit. Nothing else of the server's passes, and no
// EMBER_* variable ever does (the server's EMBER_API_KEY, say), even if
// inherit names it.
func BaseEnv(environ, inherit []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || strings.HasPrefix(name, "EMBER_") {
			continue
		}
		switch name {
		case "PATH", "HOME", "LANG", "TZ":
			out = append(out, kv)
		default:
			if slices.Contains(inherit, name) {
				out = append(out, kv)
			}
		}
	}
	return out
}

// cadence is the driver's probe cadence (driver.Cadence) with s's health
// interval and timeout.
func (d *Driver) cadence(s driver.StartSpec) driver.Cadence {
	c := driver.Cadence{Initial: d.opts.ProbeInitial, TightMax: d.opts.ProbeMax, TightFor: d.opts.ProbeTight,
		Ceiling: d.opts.ProbeInterval, Timeout: d.opts.ProbeTimeout}
	if s.HealthInterval > 0 {
		c.Ceiling = max(s.HealthInterval, c.TightMax)
	}
	if s.HealthTimeout > 0 {
		c.Timeout = s.HealthTimeout
	}
	return c
}

// waitReady probes inst with the shared loop (driver.AwaitReady): whether
// its port listens (a TCP connect, or with Options.ListenTable the socket
// table), then GET healthPath. Besides the cadence, the port is checked
// again at once when the instance writes output: most servers print a line
// as they start listening, so their start is seen without waiting for the
// next probe.
//
// The listening check's connection is kept and the health GETs go on it
// (keep-alive); waitReady returns it, idle and clean, whatever the
// outcome (nil when none is), so the caller can hand it over with a ready
// instance or close it.
func (d *Driver) waitReady(ctx context.Context, inst *Instance, healthPath string, cad driver.Cadence) (net.Conn, error) {
	dialer := net.Dialer{Timeout: cad.Timeout}
	host, port := d.opts.Host, inst.port()
	var pc probeConn
	err := driver.AwaitReady(ctx, driver.Readiness{
		Addr: inst.addr, HealthPath: healthPath, Cadence: cad, Kick: inst.outputSeen,
		Listening: func(ctx context.Context) (bool, string) {
			if d.listenTable.Load() {
				ok, err := listening(host, port)
				if err == nil {
					if !ok {
						return false, "port not open"
					}
					return true, ""
				}
				// No socket table here (a sandbox without netlink):
				// connect from now on.
				d.listenTable.Store(false)
				d.logger.Debug("listen check falls back to connect", "err", err)
			}
			gctx, cancel := graced(ctx)
			conn, err := dialer.DialContext(gctx, "tcp", inst.addr)
			cancel()
			if err != nil {
				return false, err.Error()
			}
			pc.drop()
			pc.nc = conn
			return true, ""
		},
		Health: func(ctx context.Context, url string) (bool, string) {
			return pc.health(ctx, &dialer, inst.addr, url, cad.Timeout)
		},
		Phase:  inst.phase,
		Exited: inst.done,
		Err:    inst.Err,
	})
	return pc.take(), err
}

func (d *Driver) reservePort() (int, error) {
	port, err := d.ports.Reserve(d.opts.Host)
	if err != nil {
		return 0, fmt.Errorf("process: %w", err)
	}
	return port, nil
}

func (d *Driver) releasePort(port int) { d.ports.Release(port) }

// Interface guards.
var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.Instance    = (*Instance)(nil)
	_ driver.LogTailer   = (*Instance)(nil)
	_ driver.ConnHandoff = (*Instance)(nil)
	_ slog.LogValuer     = (*Instance)(nil)
)
