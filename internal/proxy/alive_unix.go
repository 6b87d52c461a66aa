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
	if c.peekFn == nil {
		c.peekFn = c.peek // once per connection, not per request
	}
	c.peekIdle = false
	err := c.raw.Read(c.peekFn)
	return err == nil && c.peekIdle
}

// peek is alive's RawConn.Read callback.
func (c *upConn) peek(fd uintptr) bool {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekIdle = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true // never wait for readiness
}
