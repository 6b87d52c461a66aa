package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// drainTimeout bounds how long the reaper waits, after the process group
// is gone, for the rest of its output. Only a process that left the group
// (setsid) and kept the pipe open makes it wait this long.
const drainTimeout = 500 * time.Millisecond

// Instance is one local process started by Driver.
type Instance struct {
	function string
	id       string
	addr     string
	onPhase  func(driver.Phase)
	logs     *ring
	output   *switchWriter
	guard    *Guard // nil: none

	// pid is set by the reaper before Start learns the process started,
	// and never changes after.
	pid int

	// outputSeen gets a value (never blocking) when the instance writes to
	// stdout or stderr: a hint for the readiness loop (driver.Readiness.Kick).
	outputSeen chan struct{}
	// output is paced once the instance is ready (logs.go).
	outPace pacer

	done chan struct{} // closed by the reaper once the process has exited
	err  error         // why it exited; written by the reaper before done is closed

	mu     sync.Mutex // guards the following
	phases []driver.Phase
	// probeConn is the readiness probe's keep-alive connection, open and
	// idle, until TakeConn takes it or the instance exits.
	probeConn net.Conn
}

// handOver keeps conn, the probe's connection, for TakeConn when err is
// nil (the instance is ready), and closes it otherwise. It returns err.
func (i *Instance) handOver(conn net.Conn, err error) error {
	if conn == nil {
		return err
	}
	if err != nil {
		conn.Close()
		return err
	}
	i.mu.Lock()
	gone := i.exited()
	if !gone {
		i.probeConn = conn
	}
	i.mu.Unlock()
	if gone {
		conn.Close()
	}
	return nil
}

// TakeConn returns the readiness probe's connection to the instance, idle
// and clean (driver.ConnHandoff), once; nil when there is none: the
// instance asked to close it, the probe was cut mid-exchange, or it has
// been taken.
func (i *Instance) TakeConn() net.Conn {
	i.mu.Lock()
	defer i.mu.Unlock()
	c := i.probeConn
	i.probeConn = nil
	return c
}

func (i *Instance) exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// Redirect sends the instance's output lines from now on to w (nil: only
// the in-memory tail). A pre-started worker uses it when it is handed to a
// function, so its output lands in that instance's log.
func (i *Instance) Redirect(w io.Writer) { i.output.set(w) }

// kickOutput records that output arrived, for the readiness loop. Once
// the loop has ended nobody reads, and the one buffered value stays.
func (i *Instance) kickOutput() {
	select {
	case i.outputSeen <- struct{}{}:
	default:
	}
}

// port is the TCP port of Addr.
func (i *Instance) port() int {
	_, p, _ := net.SplitHostPort(i.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Addr is the host:port the instance serves HTTP on.
func (i *Instance) Addr() string { return i.addr }

// PID is the process id of the instance, which is also its process group id.
func (i *Instance) PID() int { return i.pid }

// Phases lists the start phases reached, in order.
func (i *Instance) Phases() []driver.Phase {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.phases)
}

// Done is closed when the process has exited and its output is collected.
func (i *Instance) Done() <-chan struct{} { return i.done }

// Err says why the process exited ("exited with status 3", "killed by
// signal 9"); it wraps driver.ErrExited. It is nil while the process runs.
func (i *Instance) Err() error {
	select {
	case <-i.done:
		return i.err
	default:
		return nil
	}
}

// Tail returns up to the last n lines the instance wrote to stdout or
// stderr, oldest first.
func (i *Instance) Tail(n int) []string { return i.logs.last(n) }

// Stop sends SIGTERM to the instance's process group and waits for the
// instance to exit. If ctx ends first, the group gets SIGKILL, Stop waits for
// the exit, and returns an error wrapping ctx.Err(). Stopping an instance that
// has already exited returns nil. Stop is safe to call more than once and
// concurrently.
func (i *Instance) Stop(ctx context.Context) error {
	i.signal(syscall.SIGTERM)
	select {
	case <-i.done:
		return nil
	case <-ctx.Done():
	}
	i.kill()
	<-i.done
	return fmt.Errorf("process: instance %s did not exit after SIGTERM, killed: %w", i.id, ctx.Err())
}

// LogValue lets loggers print an instance as a group of its identity.
func (i *Instance) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("function", i.function),
		slog.String("id", i.id),
		slog.Int("pid", i.pid),
		slog.String("addr", i.addr),
	)
}

func (i *Instance) kill() { i.signal(syscall.SIGKILL) }

// signal sends sig to the instance's process group, unless the instance is
// known to be gone (its group id could then, in principle, be reused).
func (i *Instance) signal(sig syscall.Signal) {
	select {
	case <-i.done:
		return
	default:
	}
	// ESRCH: the group is already gone; the reaper will report it.
	_ = syscall.Kill(-i.pid, sig)
}

func (i *Instance) phase(name string) {
	p := driver.Phase{Name: name, At: time.Now()}
	i.mu.Lock()
	i.phases = append(i.phases, p)
	i.mu.Unlock()
	if i.onPhase != nil {
		i.onPhase(p)
	}
}

// run is the instance's reaper, the one goroutine that owns the process. It
// forks the process (here, on a goroutine never locked to its OS thread, so
// the parent-death signal stays tied to a thread that lives as long as the
// server), reports the outcome of the fork on started, then waits for the
// exit, collects the remaining output and closes done. It runs release last.
func (i *Instance) run(cmd *exec.Cmd, r, w *os.File, output io.Writer, started chan<- error, release func()) {
	defer release()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		copyOutput(r, output, i.logs, i.kickOutput, i.outPace.pace)
	}()

	err := cmd.Start()
	// The child has its own copy of the write end; ours would keep the
	// pipe from ever reaching EOF.
	w.Close()
	if err != nil {
		<-copied
		r.Close()
		i.err = fmt.Errorf("%w: never started: %w", driver.ErrExited, err)
		close(i.done)
		started <- err
		return
	}
	i.pid = cmd.Process.Pid
	if i.guard != nil {
		i.guard.Track(i.pid) // its group is its pid (Setpgid)
	}
	started <- nil

	waitErr := cmd.Wait()
	close(i.outPace.exited) // the copier stops pacing: what is left, it reads at once
	// The instance is its process group. Whatever it forked and left
	// behind would keep holding its port, its memory and the output pipe,
	// so it goes with the leader.
	_ = syscall.Kill(-i.pid, syscall.SIGKILL)
	if i.guard != nil {
		i.guard.Untrack(i.pid)
	}
	drain := time.NewTimer(drainTimeout)
	select {
	case <-copied:
	case <-drain.C:
	}
	drain.Stop()
	r.Close() // unblocks the copier if something outside the group holds the pipe
	<-copied

	i.err = newExitError(waitErr, cmd.ProcessState)
	// done closes under mu with the probe's connection taken, so whoever
	// sees the exit (Stop returning, handOver's check) finds no connection
	// to a process that is gone.
	i.mu.Lock()
	close(i.done)
	c := i.probeConn
	i.probeConn = nil
	i.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// exitError reports how an instance's process ended. It wraps
// driver.ErrExited and, for a non-zero exit, the *exec.ExitError.
type exitError struct {
	msg string
	err error
}

func newExitError(waitErr error, ps *os.ProcessState) error {
	e := &exitError{msg: "exited", err: waitErr}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.msg = fmt.Sprintf("killed by signal %d", int(ws.Signal()))
		} else {
			e.msg = fmt.Sprintf("exited with status %d", ps.ExitCode())
		}
	} else if waitErr != nil {
		e.msg = "exited: " + waitErr.Error()
	}
	return e
}

func (e *exitError) Error() string { return e.msg }

func (e *exitError) Unwrap() []error {
	if e.err == nil {
		return []error{driver.ErrExited}
	}
	return []error{driver.ErrExited, e.err}
}
