//go:build !linux && !darwin

package ocr

import "os"

// mapFile falls back to reading the whole file where mmap is not wired up.
func mapFile(path string) ([]byte, func(), error) {
	b, err := os.ReadFile(path)
	return b, func() {}, err
}
