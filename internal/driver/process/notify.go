package process

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// Readiness notification (optional, like systemd's sd_notify): every
// instance inherits the write end of a pipe as file descriptor ReadyFD, and
// its number in $EMBER_READY_FD. An instance that writes the line
// "READY=1\n" to it is ready at that moment: the driver stops probing and
// the first request goes to it at once. An instance that never writes
// (most servers know nothing of it) is found by the readiness probe as
// before, so the notification only ever makes a start faster.
const (
	EnvReadyFD = "EMBER_READY_FD"
	ReadyFD    = 3 // the first of cmd.ExtraFiles
	readyLine  = "READY=1"
	// readyScanMax bounds what is searched for the line; after it the
	// pipe is only drained, so a chatty instance cannot grow our memory.
	readyScanMax = 4 << 10
)

// newReadyPipe returns the pipe an instance notifies readiness through:
// the child gets w as ReadyFD, the driver reads r.
func newReadyPipe() (r, w *os.File, err error) { return os.Pipe() }

// watchReady reads the instance's notifications from r and closes the
// returned channel (then calls onReady, if set) when "READY=1" arrives as
// a line. It keeps draining
// after that (closing r early would turn a late write into EPIPE or
// SIGPIPE in the instance). Its goroutine ends at EOF, which comes when
// every copy of the write end is closed; done (the instance's exit) closes
// r as well, for a grandchild that holds a copy.
func watchReady(r *os.File, done <-chan struct{}, onReady func()) <-chan struct{} {
	ready := make(chan struct{})
	finished := make(chan struct{})
	go func() { // closes r when the instance is gone, unblocking the reader
		select {
		case <-done:
		case <-finished:
		}
		r.Close()
	}()
	go func() {
		defer close(finished)
		var seen []byte
		buf := make([]byte, 512)
		signalled := false
		for {
			n, err := r.Read(buf)
			if !signalled && len(seen) < readyScanMax {
				seen = append(seen, buf[:n]...)
				if hasReadyLine(seen) {
					signalled = true
					close(ready)
					seen = nil
					if onReady != nil {
						onReady()
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return ready
}

// hasReadyLine reports whether b holds "READY=1" as a whole line.
func hasReadyLine(b []byte) bool {
	for {
		line, rest, found := bytes.Cut(b, []byte("\n"))
		if !found {
			return false // an unterminated line may still grow
		}
		if string(bytes.TrimSuffix(line, []byte("\r"))) == readyLine {
			return true
		}
		b = rest
	}
}

// awaitReady waits until inst is ready: told so through the ready pipe
// (notified), or found by the probe (waitReady), whichever is first.
// byNotice says which. The probe runs throughout, so an instance that
// never notifies starts as it always has; a notification cancels it.
// With hold > 0 (the function's version notified before) the probe waits
// that long first: a probe the instance answers while it starts costs it
// CPU at the moment it becomes ready (a new server's first request), so
// an instance that will say when it is ready is left alone until then.
// Phases are recorded once each.
func (d *Driver) awaitReady(ctx context.Context, inst *Instance, healthPath string, cad driver.Cadence, notified <-chan struct{}, hold time.Duration) (byNotice bool, err error) {
	if hold > 0 {
		t := time.NewTimer(hold)
		select {
		case <-notified:
			t.Stop()
			select {
			case <-inst.done:
				// It exited right after notifying: the probe path
				// below reports why.
			default:
				inst.phase(driver.PhaseListening)
				inst.phase(driver.PhaseReady)
				return true, nil
			}
		case <-t.C: // later than it used to be: probe as for any instance
		case <-inst.done:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
		}
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type probed struct {
		conn net.Conn
		err  error
	}
	result := make(chan probed, 1)
	go func() {
		conn, err := d.waitReady(pctx, inst, healthPath, cad)
		result <- probed{conn, err}
	}()
	var r probed
	select {
	case r = <-result:
		return false, inst.handOver(r.conn, r.err)
	case <-notified:
	}
	cancel(errNotified)
	r = <-result // the probe loop has ended; nothing else records phases
	switch {
	case r.err == nil:
		return false, inst.handOver(r.conn, nil) // the probe saw it ready first
	case ctx.Err() != nil:
		return false, inst.handOver(r.conn, r.err)
	}
	select {
	case <-inst.done:
		return false, inst.handOver(r.conn, r.err) // it exited right after notifying
	default:
	}
	if !inst.hasPhase(driver.PhaseListening) {
		inst.phase(driver.PhaseListening)
	}
	inst.phase(driver.PhaseReady)
	// A connection the cancelled probe left idle and clean is as good as
	// after a passed check: the instance says it is ready.
	return true, inst.handOver(r.conn, nil)
}

// notifiers remembers, per function version, how long its last instance
// took from spawn to READY=1, so the next start of that version holds its
// probe (awaitReady). A version whose held start ended by the probe with
// no READY=1 is forgotten, so an instance that stops notifying costs at
// most one held start. Keyed by version: a new deploy may run other code.
type notifiers struct {
	mu   sync.Mutex
	took map[string]time.Duration
}

// Bounds of a hold: three times the last start, at least holdMin (a start
// that varies on a loaded machine) and at most holdMax (a slow model load
// is probed, slowly, after it).
const (
	holdMin          = 20 * time.Millisecond
	holdMax          = 30 * time.Second
	maxNotifierFuncs = 4096 // versions remembered; beyond it the memory starts over
)

func (n *notifiers) hold(version string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	took, ok := n.took[version]
	if !ok {
		return 0
	}
	return min(max(3*took, holdMin), holdMax)
}

// learn records that version's instance said READY=1 took after its
// spawn; it is called when the line arrives, whether or not the probe
// found the instance ready first.
func (n *notifiers) learn(version string, took time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.took == nil || len(n.took) >= maxNotifierFuncs {
		n.took = map[string]time.Duration{}
	}
	n.took[version] = took
}

// forget drops version: its held start ended by the probe, with no
// READY=1 (yet; if one comes, learn records it again).
func (n *notifiers) forget(version string) {
	n.mu.Lock()
	delete(n.took, version)
	n.mu.Unlock()
}

// notifierKey is s's function version.
func notifierKey(s driver.StartSpec) string {
	return s.Function + "@" + strconv.FormatInt(s.Labels.Version, 10)
}

// hasPhase reports whether inst has recorded the phase name.
func (i *Instance) hasPhase(name string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, p := range i.phases {
		if p.Name == name {
			return true
		}
	}
	return false
}

func readyFDEnv() string { return EnvReadyFD + "=" + strconv.Itoa(ReadyFD) }
