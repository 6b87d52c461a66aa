package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
)

// ErrNoONNX is the answer of a build without cgo to an onnx function.
var ErrNoONNX = errors.New("runtime: onnx needs a build with cgo and ONNX Runtime (this ember was built without)")

// RuntimeRef is the npm package that ships the ONNX Runtime shared library
// Ember loads. onnxruntime_go v1.27 asks for C API version 24; ORT 1.30 still
// serves it, since the C API only ever grows.
const RuntimeRef = "npm:onnxruntime-node@1.30.0"

// RuntimeLibrary returns the path of the ONNX Runtime shared library, pulling
// RuntimeRef from the public registry when override is empty. See
// Client.RuntimeLibrary.
func RuntimeLibrary(ctx context.Context, cacheDir, override string) (string, error) {
	return (&Client{}).RuntimeLibrary(ctx, cacheDir, override, nil)
}

// RuntimeLibrary returns the path of the ONNX Runtime shared library. A
// non-empty override (the --ort-lib flag or EMBER_ORT_LIB, read by the caller)
// is used as is, with no download; it must name an existing file.
func (c *Client) RuntimeLibrary(ctx context.Context, cacheDir, override string, progress io.Writer) (string, error) {
	if override != "" {
		fi, err := os.Stat(override)
		if err != nil {
			return "", fmt.Errorf("models: onnx runtime library: %w", err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("models: onnx runtime library %s: is a directory", override)
		}
		return override, nil
	}
	rel, err := runtimeLibraryPath(runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return "", err
	}
	// The package holds every platform's libraries (~200 MB); this one
	// needs only its own directory of them.
	dir, err := c.pull(ctx, RuntimeRef, cacheDir, progress, subset{Dir: path.Dir(rel), Slug: runtime.GOOS + "-" + runtime.GOARCH})
	if err != nil {
		return "", err
	}
	lib := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Stat(lib); err != nil {
		return "", fmt.Errorf("models: %s has no %s: %w", RuntimeRef, rel, err)
	}
	return lib, nil
}

// runtimeLibraryPath is where onnxruntime-node keeps the library for a
// platform, relative to the package root.
func runtimeLibraryPath(goos, goarch string) (string, error) {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[goarch]
	if arch == "" {
		return "", fmt.Errorf("models: no ONNX Runtime build for %s/%s", goos, goarch)
	}
	switch goos {
	case "linux":
		return "bin/napi-v6/linux/" + arch + "/libonnxruntime.so.1", nil
	case "darwin":
		return "bin/napi-v6/darwin/" + arch + "/libonnxruntime.1.dylib", nil
	}
	return "", fmt.Errorf("models: no ONNX Runtime build for %s/%s", goos, goarch)
}

// DefaultCacheDir is where models and runtimes are cached when no data dir is
// configured: env EMBER_CACHE_DIR's value if set (passed in by the caller),
// else <user cache dir>/ember.
func DefaultCacheDir(envValue string) (string, error) {
	if envValue != "" {
		return envValue, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	return filepath.Join(d, "ember"), nil
}
