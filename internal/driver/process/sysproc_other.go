//go:build unix && !linux

package process

import "syscall"

// sysProcAttr starts an instance in its own process group. Without
// Pdeathsig (Linux-only) the guard process is what stops instances whose
// server died.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
