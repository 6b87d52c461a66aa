package container

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/container/cog"
)

// Instance is one running container.
type Instance struct {
	d           *Driver
	function    string
	id          string
	containerID string
	addr        string
	hostPort    int
	memory      int64
	onPhase     func(driver.Phase)
	logs        *driver.LogTail
	out         *driver.TailWriter
	// cog, for protocol cog, is the adapter Ember's requests go to (Addr);
	// it speaks Cog's API to the container at addr. Closed by run.
	cog *cog.Adapter

	done chan struct{} // closed by run once the container exited and was removed
	// follow is closed (once, followOnce) when the start is over, ready or
	// not, or the container exited: only then does run open the engine's
	// log stream. Following logs costs the engine (Podman's service) CPU
	// while the container starts, on the same cores; the stream replays
	// the output from the container's start, so nothing is lost.
	follow     chan struct{}
	followOnce sync.Once
	stopped    atomic.Bool // Ember asked it to stop or killed it

	mu     sync.Mutex // guards the following
	phases []driver.Phase
	err    error // why it exited; set before done closes
}

// Addr is where Ember sends requests: the container, or its Cog adapter.
func (in *Instance) Addr() string {
	if in.cog != nil {
		return in.cog.Addr()
	}
	return in.addr
}
func (in *Instance) Done() <-chan struct{} { return in.done }
func (in *Instance) Tail(n int) []string   { return in.logs.Last(n) }

func (in *Instance) Err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

func (in *Instance) Phases() []driver.Phase {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]driver.Phase(nil), in.phases...)
}

func (in *Instance) phase(name string) {
	p := driver.Phase{Name: name, At: time.Now()}
	in.mu.Lock()
	in.phases = append(in.phases, p)
	in.mu.Unlock()
	if in.onPhase != nil {
		in.onPhase(p)
	}
}

// run owns the container after its start: it copies its output into the
// instance's log until the stream ends, waits for it to exit, records
// why (exit status or OOM kill), removes it and closes done.
func (in *Instance) run() {
	cli := in.d.cli
	ctx := context.Background() // the container's life, not a request's
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		<-in.follow
		rc, err := cli.ContainerLogs(ctx, in.containerID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
		if err != nil {
			in.out.Write([]byte("ember: cannot read container logs: " + err.Error() + "\n"))
			return
		}
		defer rc.Close()
		stdcopy.StdCopy(in.out, in.out, rc)
	}()
	// The wait, too, costs the engine CPU while the container starts
	// (Podman syncs the container's state with the OCI runtime when it
	// opens one): it is opened once the start is over or, for a start
	// that takes longer, after exitWatchDelay, so a container that dies
	// while starting is still reported within that delay. A wait opened
	// on an exited container returns at once.
	select {
	case <-in.follow:
	case <-time.After(exitWatchDelay):
	}
	wait := cli.ContainerWait(ctx, in.containerID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var waitErr error
	select {
	case <-wait.Result:
	case waitErr = <-wait.Error:
	}
	in.startLogs()
	// The log stream ends when the container does; bound the wait for a
	// slow engine so done is never held hostage.
	select {
	case <-logsDone:
	case <-time.After(2 * time.Second):
	}
	in.out.Flush()
	err := in.exitReason(waitErr)
	in.d.remove(in.containerID)
	in.d.releasePort(in.hostPort)
	if in.cog != nil {
		in.cog.Close()
	}
	in.mu.Lock()
	in.err = err
	in.mu.Unlock()
	close(in.done)
}

// exitWatchDelay is how long after its start a starting container's
// exit is watched for without asking the engine; see run.
const exitWatchDelay = 100 * time.Millisecond

// startLogs lets run open the log stream; see follow.
func (in *Instance) startLogs() { in.followOnce.Do(func() { close(in.follow) }) }

// exitReason inspects the exited container: an OOM kill is named as such
// (a container killed at its memory limit otherwise reads as status 137).
func (in *Instance) exitReason(waitErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := in.d.cli.ContainerInspect(ctx, in.containerID, client.ContainerInspectOptions{})
	if err != nil || res.Container.State == nil {
		if waitErr != nil {
			return fmt.Errorf("%w: container wait: %v", driver.ErrExited, waitErr)
		}
		return fmt.Errorf("%w: container state unknown: %v", driver.ErrExited, err)
	}
	st := res.Container.State
	if st.OOMKilled {
		return fmt.Errorf("%w: OOM killed: the container exceeded its memory limit (%s)", driver.ErrExited, formatBytes(in.memory))
	}
	// Engines that cannot read the cgroup's OOM events (Podman with runc
	// here) report only status 137: a SIGKILL that Ember did not send to
	// a container with a memory limit is the kernel's OOM killer.
	if st.ExitCode == 137 && in.memory > 0 && !in.stopped.Load() {
		return fmt.Errorf("%w: OOM killed: SIGKILL (status 137) not sent by Ember, at its memory limit (%s); the engine did not confirm OOMKilled", driver.ErrExited, formatBytes(in.memory))
	}
	return fmt.Errorf("%w: container exited with status %d", driver.ErrExited, st.ExitCode)
}

func formatBytes(b int64) string {
	if b <= 0 {
		return "no limit set"
	}
	if b%(1<<20) == 0 {
		return fmt.Sprintf("%dMi", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

// Stop sends SIGTERM and, after the stop timeout (ctx's remaining time, or
// Options.StopTimeout), SIGKILL, then waits for the container to be gone.
func (in *Instance) Stop(ctx context.Context) error {
	select {
	case <-in.done:
		return nil
	default:
	}
	in.stopped.Store(true)
	timeout := in.d.opts.StopTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	secs := max(int(timeout/time.Second), 0)
	stopCtx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	if _, err := in.d.cli.ContainerStop(stopCtx, in.containerID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		in.kill()
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		in.kill()
		<-in.done
		return ctx.Err()
	}
}

// kill sends SIGKILL; run notices the exit and removes the container.
func (in *Instance) kill() {
	in.stopped.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := in.d.cli.ContainerKill(ctx, in.containerID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		in.d.remove(in.containerID) // a container that cannot be killed is removed by force
	}
}

// LogValue identifies the instance in log records.
func (in *Instance) String() string {
	return in.function + "/" + in.id + " (container " + shortID(in.containerID) + ")"
}

var (
	_ driver.Instance  = (*Instance)(nil)
	_ driver.LogTailer = (*Instance)(nil)
)
