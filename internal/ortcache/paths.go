// Package ortcache caches models after ONNX Runtime's graph optimisations,
// so a later session starts from the optimised graph and skips session
// creation's rewriting. The OCR engine and the text models share it.
package ortcache

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
)

// Paths returns the file to load and, when the optimised copy does not
// exist yet, where to save it (save is "" when the copy exists or dir is
// ""). The copy is keyed by the source's absolute path, size and mtime
// (the path matters: Hugging Face exports all name their graph model.onnx,
// and npm unpacks every file with the same mtime) and by the runtime
// version, which decides what the graph's fused ops mean. cpu
// (CPUKey), if set, names a level-"all" copy valid only on this CPU; else
// the copy is the portable level-"extended" one.
func Paths(path, dir, runtimeVersion, cpu string) (load, save string, err error) {
	if dir == "" {
		return path, "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("optimized model cache: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	h := fnv.New64a()
	h.Write([]byte(abs))
	base := fmt.Sprintf("%s-%012x", strings.TrimSuffix(filepath.Base(path), ".onnx"), h.Sum64()&(1<<48-1))
	name := fmt.Sprintf("%s-%d-%d-ort%s.ext.onnx", base, fi.Size(), fi.ModTime().UnixNano(), runtimeVersion)
	if cpu != "" {
		name = fmt.Sprintf("%s-%d-%d-ort%s-cpu%s.all.onnx", base, fi.Size(), fi.ModTime().UnixNano(), runtimeVersion, cpu)
	}
	cached := filepath.Join(dir, name)
	if _, err := os.Stat(cached); err == nil {
		return cached, "", nil
	}
	return path, cached, nil
}
