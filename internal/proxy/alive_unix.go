//go:build unix

package proxy

import "syscall"

// alive reports whether the instance has not closed c while it sat idle:
// a non-blocking peek that finds nothing to read (EAGAIN). Zero bytes is
// the instance's FIN; data or an error means the connection is not in a
// state to carry a new request either.
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	var buf [1]byte
	ok := false
	err := c.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && ok
}
