package process

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"

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
// returned channel when "READY=1" arrives as a line. It keeps draining
// after that (closing r early would turn a late write into EPIPE or
// SIGPIPE in the instance). Its goroutine ends at EOF, which comes when
// every copy of the write end is closed; done (the instance's exit) closes
// r as well, for a grandchild that holds a copy.
func watchReady(r *os.File, done <-chan struct{}) <-chan struct{} {
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
// (notified), or found by the probe (waitReady), whichever is first. The
// probe runs throughout, so an instance that never notifies starts as it
// always has; a notification cancels it. Phases are recorded once each.
func (d *Driver) awaitReady(ctx context.Context, inst *Instance, healthPath string, cad driver.Cadence, notified <-chan struct{}) error {
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
		return inst.handOver(r.conn, r.err)
	case <-notified:
	}
	cancel(errNotified)
	r = <-result // the probe loop has ended; nothing else records phases
	switch {
	case r.err == nil:
		return inst.handOver(r.conn, nil) // the probe saw it ready first
	case ctx.Err() != nil:
		return inst.handOver(r.conn, r.err)
	}
	select {
	case <-inst.done:
		return inst.handOver(r.conn, r.err) // it exited right after notifying
	default:
	}
	if !inst.hasPhase(driver.PhaseListening) {
		inst.phase(driver.PhaseListening)
	}
	inst.phase(driver.PhaseReady)
	// A connection the cancelled probe left idle and clean is as good as
	// after a passed check: the instance says it is ready.
	return inst.handOver(r.conn, nil)
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
