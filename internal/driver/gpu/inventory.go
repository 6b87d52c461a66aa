// Package gpu is the server's GPU inventory and the allocator that hands
// whole GPUs to instances. The inventory comes from nvidia-smi (an NVIDIA
// machine's one dependable tool, present wherever the driver is); the
// allocator is plain bookkeeping over it, so tests run it on a fake
// inventory. The app asks the allocator for devices before a start and
// gives them to the driver in driver.StartSpec.GPUDevices: processes see
// them as CUDA_VISIBLE_DEVICES, containers as an engine device request.
package gpu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Device is one GPU of the inventory.
type Device struct {
	Index     int    // nvidia-smi's index (CUDA's order with CUDA_DEVICE_ORDER=PCI_BUS_ID)
	UUID      string // "GPU-8c5e…": stable across reboots and re-enumeration
	Name      string // as the driver reports it, e.g. "NVIDIA A100-SXM4-40GB"
	MemoryMiB int64
	// Class is Ember's hardware class ("a100-40gb"), the one that
	// resources.gpu.type names and the price catalogue prices.
	Class string
}

// ID is how the device is named to CUDA and to the engine: its UUID,
// or its index when the driver reported none.
func (d Device) ID() string {
	if d.UUID != "" {
		return d.UUID
	}
	return strconv.Itoa(d.Index)
}

// Inventory reports the GPUs of this machine.
type Inventory interface {
	GPUs(ctx context.Context) ([]Device, error)
}

// Query is the nvidia-smi invocation whose CSV Parse reads.
var Query = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"}

// Bounds on what is read from nvidia-smi (or a file in its format).
const (
	MaxDevices    = 256
	maxOutput     = 1 << 20
	maxLine       = 4 << 10
	commandBudget = 15 * time.Second
)

// SMI is the inventory nvidia-smi reports. A machine without nvidia-smi
// has no GPUs: GPUs returns none and ErrNoSMI, which callers log once.
type SMI struct {
	// Path is the nvidia-smi binary ("" = looked up in PATH).
	Path string
}

// ErrNoSMI says nvidia-smi is not installed: the machine has no NVIDIA
// GPU Ember can use.
var ErrNoSMI = errors.New("nvidia-smi not found: no NVIDIA GPUs on this machine")

// GPUs runs nvidia-smi and parses its answer. Malformed lines are left
// out and reported in the error (joined), next to the devices that parsed.
func (s SMI) GPUs(ctx context.Context) ([]Device, error) {
	path := s.Path
	if path == "" {
		p, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return nil, ErrNoSMI
		}
		path = p
	}
	ctx, cancel := context.WithTimeout(ctx, commandBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, Query...)
	var out, errOut limited
	out.max, errOut.max = maxOutput, 4<<10
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoSMI
		}
		// nvidia-smi exits non-zero when the driver is not loaded
		// ("NVIDIA-SMI has failed because it couldn't communicate with
		// the NVIDIA driver"): no usable GPUs, with its own words.
		return nil, fmt.Errorf("nvidia-smi: %w: %s", err, strings.TrimSpace(errOut.String()+" "+out.String()))
	}
	return Parse(out.Bytes())
}

// File is an inventory read from a file holding nvidia-smi's CSV (the
// output of `nvidia-smi` with Query), for machines where the server cannot
// run nvidia-smi itself, and for tests.
type File struct{ Path string }

// GPUs reads and parses the file.
func (f File) GPUs(context.Context) ([]Device, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("gpu inventory: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxOutput))
	if err != nil {
		return nil, fmt.Errorf("gpu inventory %s: %w", f.Path, err)
	}
	return Parse(b)
}

// Static is a fixed inventory (tests, and an operator's explicit list).
type Static []Device

// GPUs returns the devices.
func (s Static) GPUs(context.Context) ([]Device, error) { return s, nil }

// limited is a buffer that keeps at most max bytes and drops the rest, so
// a runaway tool cannot grow the server's memory.
type limited struct {
	bytes.Buffer
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Parse reads nvidia-smi's `--query-gpu=index,uuid,name,memory.total
// --format=csv,noheader,nounits` output: one GPU a line, e.g.
//
//	0, GPU-8c5e2a4e-…, NVIDIA A100-SXM4-40GB, 40960
//
// Blank lines and a header line are skipped. A line that does not parse
// (wrong field count, a non-numeric index or memory, "[N/A]" memory, a
// duplicate index or UUID) is left out and reported, by line number, in the
// returned error, which joins every problem; the devices that parsed are
// returned with it, so one odd GPU does not hide the others.
func Parse(out []byte) ([]Device, error) {
	var devs []Device
	var errs []error
	seenIdx, seenUUID := map[int]bool{}, map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, maxLine), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "index,") || strings.HasPrefix(text, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("nvidia-smi line %d: "+format+" (line %q)", append(append([]any{line}, args...), clip(text))...))
		}
		f := strings.Split(text, ",")
		if len(f) != 4 {
			bad("want 4 comma-separated fields (index, uuid, name, memory.total), got %d", len(f))
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 || idx >= MaxDevices {
			bad("index %q is not a number in [0, %d)", f[0], MaxDevices)
			continue
		}
		mem, err := strconv.ParseFloat(strings.TrimSuffix(f[3], " MiB"), 64)
		if err != nil || !(mem > 0) || mem > 1<<30 {
			bad("memory.total %q is not a positive number of MiB", f[3])
			continue
		}
		uuid := f[1]
		if uuid == "[N/A]" {
			uuid = ""
		}
		if strings.ContainsAny(uuid, " \t=") || len(uuid) > 128 {
			bad("uuid %q is malformed", f[1])
			continue
		}
		if f[2] == "" || f[2] == "[N/A]" {
			bad("no name")
			continue
		}
		if seenIdx[idx] || (uuid != "" && seenUUID[uuid]) {
			bad("GPU %d (%s) listed twice", idx, uuid)
			continue
		}
		if len(devs) == MaxDevices {
			bad("more than %d GPUs", MaxDevices)
			break
		}
		seenIdx[idx], seenUUID[uuid] = true, true
		m := int64(math.Round(mem))
		devs = append(devs, Device{Index: idx, UUID: uuid, Name: f[2], MemoryMiB: m, Class: Class(f[2], m)})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("nvidia-smi line %d: %w", line+1, err))
	}
	return devs, errors.Join(errs...)
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
