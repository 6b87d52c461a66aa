package ortcache

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"strings"
)

// CPUKey identifies this CPU's model and instruction-set extensions, which
// decide the layout ONNX Runtime's level-"all" optimisations bake into a
// graph (NCHWc block size, kernels). It is a short hash of the first
// processor's identifying lines in /proc/cpuinfo, or "" where that file is
// missing or says nothing useful (callers then stay portable).
func CPUKey() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	return CPUKeyFrom(f, runtime.GOARCH)
}

// CPUKeyFrom hashes the identifying lines of cpuinfo's first processor.
func CPUKeyFrom(cpuinfo io.Reader, arch string) string {
	h := fnv.New64a()
	fmt.Fprintln(h, arch)
	found := false
	sc := bufio.NewScanner(cpuinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // flags lines are long
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if found {
				break // the first processor's block is enough
			}
			continue
		}
		k, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "vendor_id", "cpu family", "model", "model name", "flags", // x86
			"CPU implementer", "CPU architecture", "CPU variant", "CPU part", "Features": // arm
			fmt.Fprintln(h, line)
			found = true
		}
	}
	if !found || sc.Err() != nil {
		return ""
	}
	return fmt.Sprintf("%016x", h.Sum64())[:12]
}
