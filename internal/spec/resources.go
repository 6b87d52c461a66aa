package spec

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Bounds on what a spec may ask of a runtime. They are the spec's own,
// runtime-neutral checks; a driver may refuse more (process refuses images
// and volumes outright).
const (
	MaxCPU         = 1024     // cores
	MinMemoryBytes = 1 << 20  // 1Mi: below it no model server starts
	MaxMemoryBytes = 16 << 40 // 16Ti
	MaxGPUs        = 64
	MaxVolumes     = 32
	maxImageLen    = 512
	maxPathLen     = 4096
)

var (
	// imageRE is the character set of OCI references (registry/repo:tag or
	// @sha256:digest). The first character is alphanumeric so that an image
	// can never read as a flag to an engine's command line.
	imageRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)
	volumeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	memoryRE     = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$`)
)

// Volume is one mount in a container's filesystem: a named volume the
// runtime manages (an engine volume, a PersistentVolumeClaim) or a host
// directory, at MountPath.
type Volume struct {
	Name      string `json:"name,omitempty"`
	HostPath  string `json:"host_path,omitempty"`
	MountPath string `json:"mount_path"`
	// ReadOnly is true unless set to false: weights are read, and an
	// instance that may write must say so.
	ReadOnly *bool `json:"read_only,omitempty"`
}

// Writable reports whether the spec asked for a read-write mount
// (read_only: false); every other mount is read-only.
func (v Volume) Writable() bool { return v.ReadOnly != nil && !*v.ReadOnly }

// GPUCount is the number of GPUs one instance of f occupies (0 for a CPU
// function): the one reading of resources.gpu.count for metering, pricing
// and drivers.
func (f *Function) GPUCount() int {
	if f.Resources == nil || f.Resources.GPU == nil {
		return 0
	}
	return f.Resources.GPU.Count
}

// MemoryBytes parses Memory: a number of bytes with an optional binary
// (Ki, Mi, Gi, Ti) or decimal (k/K, M, G, T) unit, as Kubernetes writes
// quantities. "" is 0 (not set).
func (r *Resources) MemoryBytes() (int64, error) {
	if r == nil || r.Memory == "" {
		return 0, nil
	}
	m := memoryRE.FindStringSubmatch(r.Memory)
	if m == nil {
		return 0, fmt.Errorf("invalid quantity %q (want bytes with an optional unit, e.g. \"512Mi\", \"2Gi\")", r.Memory)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid quantity %q: %w", r.Memory, err)
	}
	unit := map[string]float64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
		"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m[2]]
	b := math.Ceil(v * unit)
	if b < MinMemoryBytes || b > MaxMemoryBytes {
		return 0, fmt.Errorf("must be in [1Mi, 16Ti] (got %q)", r.Memory)
	}
	return int64(b), nil
}

func validateResources(r *Resources, add func(field, format string, args ...any)) {
	if r == nil {
		return
	}
	// !(x >= 0) also refuses NaN.
	if !(r.CPU >= 0) || r.CPU > MaxCPU {
		add("resources.cpu", "must be in [0, %d] cores (got %g)", MaxCPU, r.CPU)
	}
	if _, err := r.MemoryBytes(); err != nil {
		add("resources.memory", "%v", err)
	}
	if g := r.GPU; g != nil {
		if g.Type == "" {
			add("resources.gpu.type", "required when resources.gpu is set")
		} else if len(g.Type) > 63 || strings.ContainsFunc(g.Type, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
			add("resources.gpu.type", "must be at most 63 characters without spaces, e.g. a100-40gb (got %q)", g.Type)
		}
		if g.Count < 1 {
			add("resources.gpu.count", "must be ≥ 1 (got %d)", g.Count)
		} else if g.Count > MaxGPUs {
			add("resources.gpu.count", "must be ≤ %d (got %d)", MaxGPUs, g.Count)
		}
	}
}

func validateImage(image string, add func(field, format string, args ...any)) {
	if image == "" {
		return
	}
	if len(image) > maxImageLen || !imageRE.MatchString(image) {
		add("image", "must be an image reference such as ghcr.io/acme/model:1.2 or repo@sha256:<digest>, at most %d characters (got %q)", maxImageLen, image)
	}
}

func validateVolumes(vols []Volume, add func(field, format string, args ...any)) {
	if len(vols) > MaxVolumes {
		add("volumes", "at most %d (got %d)", MaxVolumes, len(vols))
		return
	}
	mounted := map[string]int{}
	for i, v := range vols {
		field := fmt.Sprintf("volumes[%d]", i)
		switch {
		case v.Name == "" && v.HostPath == "":
			add(field, "set name (a volume the runtime manages) or host_path")
		case v.Name != "" && v.HostPath != "":
			add(field, "set name or host_path, not both")
		case v.Name != "" && !volumeNameRE.MatchString(v.Name):
			add(field+".name", "must match [a-z0-9]([a-z0-9-]*[a-z0-9])?, at most 63 characters (got %q)", v.Name)
		case v.HostPath != "" && !cleanAbs(v.HostPath):
			add(field+".host_path", "must be an absolute, clean path such as /srv/models (got %q)", v.HostPath)
		}
		switch {
		case !cleanAbs(v.MountPath) || v.MountPath == "/":
			add(field+".mount_path", "must be an absolute, clean path other than / such as /models (got %q)", v.MountPath)
		case mounted[v.MountPath] > 0:
			add(field+".mount_path", "%q is already mounted by volumes[%d]", v.MountPath, mounted[v.MountPath]-1)
		default:
			mounted[v.MountPath] = i + 1
		}
	}
}

// cleanAbs reports whether p is an absolute path already in its shortest
// form (no "..", no "//", no trailing "/") without control characters.
func cleanAbs(p string) bool {
	return len(p) <= maxPathLen && strings.HasPrefix(p, "/") && path.Clean(p) == p &&
		!strings.ContainsFunc(p, func(c rune) bool { return c < ' ' || c == 0x7f })
}
