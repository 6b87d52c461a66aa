//go:build !linux

package process

import "errors"

// listenTableSupported: only Linux's socket table is read; elsewhere a
// starting instance's port is checked by a connect.
const listenTableSupported = false

func listening(string, int) (bool, error) {
	return false, errors.New("process: listen check: no socket table on this system")
}
