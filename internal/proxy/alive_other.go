//go:build !unix

package proxy

// alive cannot peek without blocking here; a dead connection shows up as
// a 502 on its first use.
func (c *upConn) alive() bool { return true }
