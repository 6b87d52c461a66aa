package process

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
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
type Guard struct {
	cmd *exec.Cmd

	mu   sync.Mutex // guards w and failed
	w    *os.File
	werr error // first write failure: the helper is gone
}

// StartGuard starts the helper: argv runs RunGuard on its stdin (argv[0]
// is normally the server's own executable).
func StartGuard(argv []string) (*Guard, error) {
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
	return &Guard{cmd: cmd, w: w}, nil
}

// Track registers process group pgid.
func (g *Guard) Track(pgid int) { g.send('+', pgid) }

// Untrack unregisters process group pgid.
func (g *Guard) Untrack(pgid int) { g.send('-', pgid) }

func (g *Guard) send(op byte, pgid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w == nil || g.werr != nil {
		return
	}
	// One write of a short line is atomic on a pipe (< PIPE_BUF).
	if _, err := g.w.Write([]byte(string(op) + strconv.Itoa(pgid) + "\n")); err != nil {
		g.werr = err // Pdeathsig still covers each instance's own process
	}
}

// Err reports whether the helper stopped listening (nil while it works).
func (g *Guard) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.werr
}

// Close ends the helper as the server's death would: it kills the groups
// still registered (none after an orderly shutdown) and exits.
func (g *Guard) Close() error {
	g.mu.Lock()
	w := g.w
	g.w = nil
	g.mu.Unlock()
	if w == nil {
		return nil
	}
	w.Close()
	return g.cmd.Wait()
}

// RunGuard is the helper's main loop: it reads +PGID and -PGID lines from
// r until EOF, then calls kill for each group still registered. It ignores
// the terminal's and supervisors' stop signals, so only EOF ends it.
func RunGuard(r io.Reader, kill func(pgid int)) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	groups := make(map[int]bool)
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
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		kill(pgid)
	}
	return sc.Err()
}

// KillGroup SIGKILLs process group pgid (RunGuard's kill in production).
func KillGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }
