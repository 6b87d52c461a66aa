package driver

import (
	"fmt"
	"net"
	"sync"
)

// Ports hands out free TCP ports on a host address to instances, so that
// a driver never gives one port to two live instances. The kernel picks
// each port (listen on :0); the listener is closed before the instance
// binds it, so another program could take it in between, which the
// instance's start then reports. The zero value is ready to use; it is
// safe for concurrent use.
type Ports struct {
	mu   sync.Mutex   // guards held
	held map[int]bool // ports handed out and not yet released
}

// portAttempts bounds how many kernel-picked ports Reserve tries before
// giving up (each one already held by this driver costs one attempt).
const portAttempts = 16

// Reserve picks a free port on host ("127.0.0.1") that no live instance
// of this Ports holds, and holds it until Release.
func (p *Ports) Reserve(host string) (int, error) {
	var tried []net.Listener // ports skipped stay bound until we decide, so the kernel offers others
	defer func() {
		for _, l := range tried {
			l.Close()
		}
	}()
	for range portAttempts {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("picking a port on %s: %w", host, err)
		}
		tried = append(tried, l)
		port := l.Addr().(*net.TCPAddr).Port
		p.mu.Lock()
		if p.held == nil {
			p.held = map[int]bool{}
		}
		taken := p.held[port]
		p.held[port] = true
		p.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on %s after %d attempts", host, portAttempts)
}

// Hold marks port as handed out (an instance this driver did not start
// but took over, which already listens on it), so Reserve never offers it
// until Release.
func (p *Ports) Hold(port int) {
	p.mu.Lock()
	if p.held == nil {
		p.held = map[int]bool{}
	}
	p.held[port] = true
	p.mu.Unlock()
}

// Release gives port back (no-op if it is not held).
func (p *Ports) Release(port int) {
	p.mu.Lock()
	delete(p.held, port)
	p.mu.Unlock()
}
