package process

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

// listensOn matches the port and the bound address: the host's own, or
// the unspecified address of the family.
func TestListensOn(t *testing.T) {
	msg := func(family uint8, port int, src netip.Addr) []byte {
		b := make([]byte, inetDiagMsgLen)
		b[0] = family
		b[1] = tcpListen
		binary.BigEndian.PutUint16(b[4:], uint16(port))
		a := src.As16()
		if family == syscall.AF_INET {
			a4 := src.As4()
			copy(b[8:], a4[:])
		} else {
			copy(b[8:], a[:])
		}
		return b
	}
	host := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name   string
		family uint8
		port   int
		src    string
		want   bool
	}{
		{"host, v4", syscall.AF_INET, 8000, "127.0.0.1", true},
		{"any, v4", syscall.AF_INET, 8000, "0.0.0.0", true},
		{"any, v6 (dual stack)", syscall.AF_INET6, 8000, "::", true},
		{"v4-mapped host", syscall.AF_INET6, 8000, "::ffff:127.0.0.1", true},
		{"other port", syscall.AF_INET, 8001, "127.0.0.1", false},
		{"other address", syscall.AF_INET, 8000, "127.0.0.2", false},
		{"v6 loopback is not 127.0.0.1", syscall.AF_INET6, 8000, "::1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := listensOn(msg(tc.family, tc.port, netip.MustParseAddr(tc.src)), tc.family, host, 8000); got != tc.want {
				t.Errorf("listensOn = %v, want %v", got, tc.want)
			}
		})
	}
	if listensOn(make([]byte, inetDiagMsgLen-1), syscall.AF_INET, host, 0) {
		t.Error("a short message matched")
	}
}

// What one check of a port that is not open costs Ember: the socket table
// against a connect (which, once the port is open, also costs the instance
// an accept). go test -run '^$' -bench ListenCheck ./internal/driver/process
func BenchmarkListenCheck(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			if ok, err := listening("127.0.0.1", port); err != nil || ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("connect", func(b *testing.B) {
		addr := l.Addr().String()
		for b.Loop() {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				b.Fatal("port open")
			}
		}
	})
}
