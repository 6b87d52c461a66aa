package driver

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports never hands one port to two holders at once, and a released
// port may be handed out again.
func TestPortsAreExclusive(t *testing.T) {
	var p Ports
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port, err := p.Reserve("127.0.0.1")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[port] {
				t.Errorf("port %d handed out twice", port)
			}
			seen[port] = true
		}()
	}
	wg.Wait()
	// A reserved port is free for its instance to bind.
	for port := range seen {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("reserved port %d cannot be bound: %v", port, err)
		}
		l.Close()
		p.Release(port)
	}
	if len(p.held) != 0 {
		t.Errorf("held after release: %v", p.held)
	}
	if _, err := p.Reserve("203.0.113.1"); err == nil {
		t.Error("Reserve on an address this host does not have succeeded")
	}
}

// A held port (an adopted instance's) is never handed out until released.
func TestPortsHold(t *testing.T) {
	var p Ports
	port, err := p.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p.Release(port)
	p.Hold(port)
	if !p.held[port] {
		t.Fatalf("port %d not held after Hold", port)
	}
	for range 8 {
		got, err := p.Reserve("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if got == port {
			t.Fatalf("held port %d handed out", port)
		}
	}
	p.Release(port)
	if p.held[port] {
		t.Errorf("port %d still held after Release", port)
	}
}
