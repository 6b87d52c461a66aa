package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	a100 := Device{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA A100-SXM4-40GB", MemoryMiB: 40960, Class: "a100-40gb"}
	tests := []struct {
		name    string
		in      string
		want    []Device
		wantErr []string // substrings of the joined error, in any order
	}{
		{"empty", "", nil, nil},
		{"one", "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\n", []Device{a100}, nil},
		{"blank lines, CRLF, header and spacing", "index, uuid, name, memory.total [MiB]\r\n\r\n  0 ,GPU-aaaa,  NVIDIA A100-SXM4-40GB ,40960 \r\n\n",
			[]Device{a100}, nil},
		{"two kinds", "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559\n",
			[]Device{a100, {Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, Class: "h100-80gb"}}, nil},
		{"units left in", "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960 MiB\n", []Device{a100}, nil},
		{"uuid N/A falls back to the index", "3, [N/A], Tesla T4, 15360\n",
			[]Device{{Index: 3, Name: "Tesla T4", MemoryMiB: 15360, Class: "t4-16gb"}}, nil},
		{"malformed lines are skipped, the good one kept",
			"garbage\n0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\nx, GPU-cccc, NVIDIA L4, 23034\n2, GPU-dddd, NVIDIA L4, [N/A]\n4, GPU-eeee, , 100\n",
			[]Device{a100}, []string{"line 1: want 4 comma-separated fields", `line 3: index "x"`, `line 4: memory.total "[N/A]"`, "line 5: no name"}},
		{"duplicates", "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\n0, GPU-ffff, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960\n",
			[]Device{a100}, []string{"line 2: GPU 0 (GPU-ffff) listed twice", "line 3: GPU 1 (GPU-aaaa) listed twice"}},
		{"negative and huge numbers", "-1, GPU-a, NVIDIA L4, 1\n999, GPU-b, NVIDIA L4, 1\n5, GPU-c, NVIDIA L4, -4\n",
			nil, []string{"line 1: index", "line 2: index", "line 3: memory.total"}},
		{"driver failure text", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
			nil, []string{"line 1: want 4 comma-separated fields"}},
		{"uuid with spaces", "0, GPU a, NVIDIA L4, 23034\n", nil, []string{`uuid "GPU a" is malformed`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("devices = %+v, want %+v", got, tt.want)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("err = %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("err = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseIsBounded(t *testing.T) {
	var b strings.Builder
	for i := range MaxDevices + 5 {
		b.WriteString(strconv.Itoa(i) + ", GPU-" + strconv.Itoa(i) + ", NVIDIA L4, 23034\n")
	}
	got, err := Parse([]byte(b.String()))
	if len(got) != MaxDevices || err == nil {
		t.Fatalf("got %d devices, err %v; want %d and an error", len(got), err, MaxDevices)
	}
	long := strings.Repeat("x", 10<<10) + "\n0, GPU-a, NVIDIA L4, 23034\n"
	if _, err := Parse([]byte(long)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("a 10 KiB line: err = %v, want token too long", err)
	}
}

func TestClass(t *testing.T) {
	tests := []struct {
		name string
		mem  int64
		want string
	}{
		{"NVIDIA A100-SXM4-40GB", 40960, "a100-40gb"},
		{"NVIDIA A100-SXM4-80GB", 81920, "a100-80gb"},
		{"NVIDIA A100 80GB PCIe", 81920, "a100-80gb"},
		{"NVIDIA A100-PCIE-40GB", 40536, "a100-40gb"},
		{"NVIDIA H100 80GB HBM3", 81559, "h100-80gb"},
		{"NVIDIA H100 NVL", 95830, "h100-94gb"},
		{"NVIDIA H200", 143771, "h200-141gb"},
		{"NVIDIA L4", 23034, "l4-24gb"},
		{"NVIDIA L40S", 46068, "l40s-48gb"},
		{"Tesla T4", 15360, "t4-16gb"},
		{"NVIDIA A10G", 23028, "a10g-24gb"},
		{"Tesla V100-SXM2-32GB", 32768, "v100-32gb"},
		{"Tesla V100-SXM2-16GB", 16160, "v100-16gb"},
		{"NVIDIA GeForce RTX 4090", 24564, "rtx4090-24gb"},
		{"Quadro P5000", 16384, "quadro-p5000-16gb"},
		{"", 1024, "gpu-1gb"},
	}
	for _, tt := range tests {
		if got := Class(tt.name, tt.mem); got != tt.want {
			t.Errorf("Class(%q, %d) = %q, want %q", tt.name, tt.mem, got, tt.want)
		}
	}
}

func TestFileInventory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gpus.csv")
	if err := os.WriteFile(p, []byte("0, GPU-aaaa, NVIDIA L4, 23034\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	devs, err := File{Path: p}.GPUs(t.Context())
	if err != nil || len(devs) != 1 || devs[0].Class != "l4-24gb" {
		t.Fatalf("File.GPUs = %+v, %v", devs, err)
	}
	if _, err := (File{Path: p + ".missing"}).GPUs(t.Context()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestSMIAbsentMeansNoGPUs(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	devs, err := SMI{}.GPUs(t.Context())
	if len(devs) != 0 || !errors.Is(err, ErrNoSMI) {
		t.Fatalf("GPUs = %v, %v; want none and ErrNoSMI", devs, err)
	}
}

func TestSMIRunsTheQuery(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "nvidia-smi")
	// The fake answers only the exact query Ember documents.
	script := "#!/bin/sh\n[ \"$1 $2\" = \"" + strings.Join(Query, " ") + "\" ] || { echo \"bad args: $*\" >&2; exit 9; }\necho '0, GPU-aaaa, NVIDIA L4, 23034'\n"
	if err := os.WriteFile(fake, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	devs, err := SMI{Path: fake}.GPUs(t.Context())
	if err != nil || len(devs) != 1 || devs[0].UUID != "GPU-aaaa" {
		t.Fatalf("GPUs = %+v, %v", devs, err)
	}
	failing := filepath.Join(dir, "failing-smi")
	os.WriteFile(failing, []byte("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n"), 0o700)
	if _, err := (SMI{Path: failing}).GPUs(t.Context()); err == nil || !strings.Contains(err.Error(), "couldn't communicate") {
		t.Errorf("failing nvidia-smi: err = %v, want its message", err)
	}
}

func fakeInventory() []Device {
	return []Device{
		{Index: 0, UUID: "GPU-0", Class: "a100-40gb"},
		{Index: 1, UUID: "GPU-1", Class: "a100-40gb"},
		{Index: 2, UUID: "GPU-2", Class: "h100-80gb"},
	}
}

func ids(ds []Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID())
	}
	return out
}

func TestAllocator(t *testing.T) {
	type step struct {
		acquire *Request // or release
		release string
		want    []string // device ids granted
		wantErr error
	}
	req := func(owner, class string, n int, shared bool) *Request {
		return &Request{Owner: owner, Class: class, Count: n, Shared: shared}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"packs lowest index first, never shares unshared", []step{
			{acquire: req("a", "a100-40gb", 1, false), want: []string{"GPU-0"}},
			{acquire: req("b", "A100-40GB", 1, false), want: []string{"GPU-1"}},
			{acquire: req("c", "a100-40gb", 1, false), wantErr: ErrNoFreeGPU},
			{acquire: req("d", "a100-40gb", 1, true), wantErr: ErrNoFreeGPU},
		}},
		{"release frees for the next", []step{
			{acquire: req("a", "a100-40gb", 2, false), want: []string{"GPU-0", "GPU-1"}},
			{acquire: req("b", "a100-40gb", 1, false), wantErr: ErrNoFreeGPU},
			{release: "a"},
			{acquire: req("b", "a100-40gb", 1, false), want: []string{"GPU-0"}},
			{release: "nobody"},
		}},
		{"shared requests pack onto one GPU", []step{
			{acquire: req("a", "a100-40gb", 1, true), want: []string{"GPU-0"}},
			{acquire: req("b", "a100-40gb", 1, true), want: []string{"GPU-0"}},
			{acquire: req("c", "a100-40gb", 1, false), want: []string{"GPU-1"}},
			{acquire: req("d", "a100-40gb", 1, true), want: []string{"GPU-0"}},
			{acquire: req("e", "a100-40gb", 2, true), wantErr: ErrNoFreeGPU}, // GPU-1 is held unshared
		}},
		{"an unshared request never joins a shared GPU", []step{
			{acquire: req("a", "a100-40gb", 1, true), want: []string{"GPU-0"}},
			{acquire: req("b", "a100-40gb", 2, false), wantErr: ErrNoFreeGPU},
			{release: "a"},
			{acquire: req("b", "a100-40gb", 2, false), want: []string{"GPU-0", "GPU-1"}},
		}},
		{"class must match", []step{
			{acquire: req("a", "h100-80gb", 1, false), want: []string{"GPU-2"}},
			{acquire: req("b", "h100-80gb", 1, false), wantErr: ErrNoFreeGPU},
			{acquire: req("c", "h100-80gb", 2, false), wantErr: ErrNoMatchingGPU},
			{acquire: req("d", "l4-24gb", 1, false), wantErr: ErrNoMatchingGPU},
		}},
		{"a retried owner gets its GPUs back", []step{
			{acquire: req("a", "a100-40gb", 1, false), want: []string{"GPU-0"}},
			{acquire: req("a", "a100-40gb", 1, false), want: []string{"GPU-0"}},
			{acquire: req("b", "a100-40gb", 1, false), want: []string{"GPU-1"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAllocator(fakeInventory(), "")
			for i, s := range tt.steps {
				if s.acquire == nil {
					a.Release(s.release)
					continue
				}
				got, err := a.Acquire(*s.acquire)
				if !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
					t.Fatalf("step %d %+v: err = %v, want %v", i, *s.acquire, err, s.wantErr)
				}
				if !reflect.DeepEqual(ids(got), s.want) {
					t.Fatalf("step %d %+v: got %v, want %v", i, *s.acquire, ids(got), s.want)
				}
			}
		})
	}
}

func TestAllocatorMessages(t *testing.T) {
	a := NewAllocator(fakeInventory(), "")
	a.Acquire(Request{Owner: "fn/i1", Class: "h100-80gb", Count: 1})
	_, err := a.Acquire(Request{Owner: "fn/i2", Class: "h100-80gb", Count: 1})
	if want := "no free GPU: 1 unshared h100-80gb GPU(s) wanted, all 1 held (GPU 2 by fn/i1)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("busy: %v\nwant prefix %q", err, want)
	}
	if err := a.Check("l4-24gb", 1); err == nil || err.Error() != "no matching GPU on this server: this server has no l4-24gb GPU (it has 2× a100-40gb, 1× h100-80gb)" {
		t.Errorf("no match: %v", err)
	}
	if err := a.Check("a100-40gb", 3); err == nil || err.Error() != "no matching GPU on this server: one instance asks for 3 a100-40gb GPUs; this server has 2" {
		t.Errorf("too few: %v", err)
	}
	none := NewAllocator(nil, ErrNoSMI.Error())
	if err := none.Check("a100-40gb", 1); err == nil || err.Error() != "no matching GPU on this server: this server has no a100-40gb GPU (it has none: nvidia-smi not found: no NVIDIA GPUs on this machine)" {
		t.Errorf("no GPUs: %v", err)
	}
	if got := a.Held(); !reflect.DeepEqual(got, map[int]int{2: 1}) {
		t.Errorf("Held = %v", got)
	}
}

// testdata/h200.csv is the real answer of nvidia-smi with Query on an
// NVIDIA H200 machine (driver output, November 2026).
func TestParseRealH200(t *testing.T) {
	devs, err := File{Path: "testdata/h200.csv"}.GPUs(t.Context())
	want := []Device{{Index: 0, UUID: "GPU-cbbf01cc-aac3-342e-da7b-5e0e6c0fb129", Name: "NVIDIA H200", MemoryMiB: 143771, Class: "h200-141gb"}}
	if err != nil || !reflect.DeepEqual(devs, want) {
		t.Fatalf("GPUs = %+v, %v; want %+v", devs, err, want)
	}
}
