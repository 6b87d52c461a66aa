package process

import "syscall"

// sysProcAttr starts an instance in its own process group, killed by the
// kernel if the server dies (Pdeathsig is Linux-only).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
