//go:build linux || darwin

package ocr

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps a model file read-only. The pages come straight from the page
// cache, so a model that was loaded before costs no copy into the Go heap;
// MAP_POPULATE (Linux) faults them in up front so the timing of "get the
// bytes" is honest rather than deferred into session creation.
func mapFile(path string) (data []byte, release func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, fmt.Errorf("%s: cannot map %d bytes", path, size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED|mapPopulate)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}
