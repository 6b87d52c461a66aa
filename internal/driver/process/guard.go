package process

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Guard makes instances' whole process groups die with the server, however
// it dies. Pdeathsig reaches only an instance's own process: a command such
// as `sh -c "python serve.py"` leaves python running when the server is
// SIGKILLed. The guard is a small helper process (`ember worker guard`)
// whose stdin is a pipe that only the server holds open. The kernel closes
// that pipe when the server exits for any reason, SIGKILL included; the
// helper then SIGKILLs every process group still registered and exits.
//
// The server registers a group when its leader starts and unregisters it
// once the driver has reaped it, so a recycled group id is not at risk
// while the server lives.
//
// A helper that dies or stops reading is replaced (re-armed): the old one
// is SIGKILLed first, so it cannot see EOF and kill live instances, then a
// new one starts and is sent every group still registered. If that fails
// too, the next registration tries again.
type Guard struct {
	argv   []string
	logger *slog.Logger

	mu     sync.Mutex  // guards the following
	h      *helper     // nil: closed, or the last re-arm failed
	closed bool        // Close was called
	groups map[int]int // registered groups (counts, as RunGuard keeps them)
	werr   error       // the last failure not yet repaired by a re-arm
}

// helper is one running guard process.
type helper struct {
	cmd    *exec.Cmd
	w      *os.File
	exited chan struct{} // closed once the helper has been reaped
	runErr error         // the helper's exit; valid after exited
}

// guardWriteTimeout bounds one registration: a helper that stopped reading
// (stopped by a signal, say) must not stall instance starts.
const guardWriteTimeout = time.Second

// StartGuard starts the helper: argv runs RunGuard on its stdin (argv[0]
// is normally the server's own executable). logger may be nil.
func StartGuard(argv []string, logger *slog.Logger) (*Guard, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, err := startHelper(argv)
	if err != nil {
		return nil, err
	}
	return &Guard{argv: argv, logger: logger, h: h, groups: make(map[int]int)}, nil
}

func startHelper(argv []string) (*helper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	// Its own group, so a Ctrl-C to the server's group cannot kill it before
	// the server has stopped what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("guard: start %s: %w", argv[0], err)
	}
	r.Close() // the helper holds the read end; the server only writes
	h := &helper{cmd: cmd, w: w, exited: make(chan struct{})}
	go func() { // reaps the helper whenever it exits; ends with it
		h.runErr = cmd.Wait()
		close(h.exited)
	}()
	return h, nil
}

// write sends one line; one write of a short line is atomic on a pipe
// (< PIPE_BUF).
func (h *helper) write(line string) error {
	_ = h.w.SetWriteDeadline(time.Now().Add(guardWriteTimeout))
	_, err := h.w.Write([]byte(line))
	return err
}

// Track registers process group pgid.
func (g *Guard) Track(pgid int) { g.send('+', pgid) }

// Untrack unregisters process group pgid.
func (g *Guard) Untrack(pgid int) { g.send('-', pgid) }

func (g *Guard) send(op byte, pgid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if op == '+' {
		g.groups[pgid]++
	} else if g.groups[pgid]--; g.groups[pgid] <= 0 {
		delete(g.groups, pgid)
	}
	if g.h != nil {
		err := g.h.write(string(op) + strconv.Itoa(pgid) + "\n")
		if err == nil {
			return
		}
		g.logger.Warn("the instance guard stopped listening; replacing it", "err", err)
	}
	if err := g.rearmLocked(); err != nil {
		g.werr = err
		g.logger.Warn("the instance guard could not be replaced: if the server is killed now, processes that instances started may outlive it (the instances themselves still die); retrying at the next instance start or stop", "err", err)
		return
	}
	g.werr = nil
	g.logger.Info("the instance guard was replaced", "groups", len(g.groups))
}

// rearmLocked replaces the helper with a new one that knows every
// registered group. g.mu must be held.
func (g *Guard) rearmLocked() error {
	if old := g.h; old != nil {
		g.h = nil
		// Kill before closing the pipe: a helper that is merely stopped
		// would otherwise read EOF when it resumes and kill live instances.
		_ = old.cmd.Process.Kill()
		old.w.Close()
		<-old.exited
	}
	h, err := startHelper(g.argv)
	if err != nil {
		return err
	}
	var b strings.Builder
	for pgid, n := range g.groups {
		for range n {
			b.WriteString("+" + strconv.Itoa(pgid) + "\n")
		}
	}
	// Registrations are few (one per live instance), far below the pipe's
	// buffer, so this write does not wait on the new helper.
	if err := h.write(b.String()); err != nil {
		_ = h.cmd.Process.Kill()
		h.w.Close()
		<-h.exited
		return fmt.Errorf("guard: re-register %d groups: %w", len(g.groups), err)
	}
	g.h = h
	return nil
}

// Err reports whether the guard is down (nil while a helper listens).
func (g *Guard) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.werr
}

// Close ends the helper as the server's death would: it kills the groups
// still registered (none after an orderly shutdown) and exits. A helper
// that has not exited 5 s later is killed.
func (g *Guard) Close() error {
	g.mu.Lock()
	h := g.h
	g.h, g.closed = nil, true
	g.mu.Unlock()
	if h == nil {
		return nil
	}
	h.w.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-h.exited:
		return h.runErr
	case <-t.C:
		_ = h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("guard: did not exit after its pipe closed; killed")
	}
}

// RunGuard is the helper's main loop: it reads +PGID and -PGID lines from
// r until EOF, then calls kill for each group still registered. The helper
// process should call IgnoreStopSignals first, so only EOF ends it.
func RunGuard(r io.Reader, kill func(pgid int)) error {
	// Counts, not a set: a late -P for an instance whose pid a new instance
	// already reuses must not unregister the new one.
	groups := make(map[int]int)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue // never signal init's group or everything (-1)
		}
		switch line[0] {
		case '+':
			groups[pgid]++
		case '-':
			if groups[pgid]--; groups[pgid] <= 0 {
				delete(groups, pgid)
			}
		}
	}
	for pgid := range groups {
		kill(pgid)
	}
	return sc.Err()
}

// KillGroup SIGKILLs process group pgid (RunGuard's kill in production).
func KillGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }

// IgnoreStopSignals makes the helper deaf to the terminal's and
// supervisors' stop signals (SIGINT, SIGTERM, SIGHUP), so that only its
// pipe closing ends it. Only the helper process may call it: ignored
// signals stay ignored in every process it would start.
func IgnoreStopSignals() { signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP) }
