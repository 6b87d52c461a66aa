package ortcache

import (
	"strings"
	"testing"
)

func TestCPUKey(t *testing.T) {
	const x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu sse avx2 avx512f\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\n"
	const x86MHz = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 3100.000\nflags\t\t: fpu sse avx2 avx512f\n"
	const x86AVX2 = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu sse avx2\n"
	const arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
	key := func(s, arch string) string { return CPUKeyFrom(strings.NewReader(s), arch) }
	tests := []struct {
		name      string
		a, b      string // cpuinfo texts
		archA     string
		archB     string
		wantEqual bool
	}{
		{"only the first processor counts", x86, x86[:strings.Index(x86, "\n\n")+1], "amd64", "amd64", true},
		{"clock speed does not count", x86, x86MHz, "amd64", "amd64", true},
		{"instruction sets count", x86, x86AVX2, "amd64", "amd64", false},
		{"architecture counts", arm, arm, "arm64", "arm", false},
		{"arm features are read", arm, strings.Replace(arm, " sve", "", 1), "arm64", "arm64", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := key(tt.a, tt.archA), key(tt.b, tt.archB)
			if len(a) != 12 || len(b) != 12 {
				t.Fatalf("keys %q, %q: want 12 hex digits", a, b)
			}
			if (a == b) != tt.wantEqual {
				t.Errorf("keys %q, %q: equal = %v, want %v", a, b, a == b, tt.wantEqual)
			}
		})
	}
	if k := key("processor\t: 0\nBogoMIPS\t: 50.00\n", "amd64"); k != "" {
		t.Errorf("cpuinfo with nothing identifying: key %q, want \"\" (stay portable)", k)
	}
}
