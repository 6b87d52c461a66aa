package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/driver"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	server := filepath.Join(dir, "server")
	noexec := filepath.Join(dir, "noexec")
	for p, mode := range map[string]os.FileMode{server: 0o755, noexec: 0o644} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := []string{server, "--port", "${PORT}"}
	tests := []struct {
		name string
		s    driver.StartSpec
		want []string // one "field: reason" prefix per error, in order; none = valid
	}{
		{"command", driver.StartSpec{Command: cmd}, nil},
		{"resources are hints", driver.StartSpec{Command: cmd, Resources: driver.Resources{CPU: 2, MemoryBytes: 1 << 30, GPU: driver.GPU{Type: "l4", Count: 1}}}, nil},
		{"no command", driver.StartSpec{}, []string{`command: required for runtime "process"`}},
		{"empty argv0", driver.StartSpec{Command: []string{""}}, []string{"command: required"}},
		{"image", driver.StartSpec{Command: cmd, Image: "ghcr.io/acme/m:1"},
			[]string{"image: the process runtime runs host commands; use runtime: container for images"}},
		{"volumes", driver.StartSpec{Command: cmd, Volumes: []driver.Volume{{HostPath: "/srv", MountPath: "/m"}}},
			[]string{"volumes: the process runtime runs in the host's filesystem (see workdir); use runtime: container for volumes"}},
		{"image only", driver.StartSpec{Image: "m"}, []string{"command: required", "image: the process runtime"}},
		{"on PATH", driver.StartSpec{Command: []string{"sh", "-c", "true"}}, nil},
		{"relative to workdir", driver.StartSpec{Command: []string{"./server"}, Workdir: dir}, nil},
		{"missing", driver.StartSpec{Command: []string{filepath.Join(dir, "nope")}},
			[]string{"command: " + filepath.Join(dir, "nope") + ": no such file or directory"}},
		{"not on PATH", driver.StartSpec{Command: []string{"no-such-server-xyz"}},
			[]string{`command: "no-such-server-xyz": not found in PATH`}},
		{"not executable", driver.StartSpec{Command: []string{noexec}}, []string{"command: " + noexec + ": permission denied"}},
		{"relative not executable", driver.StartSpec{Command: []string{"./noexec"}, Workdir: dir},
			[]string{"command: ./noexec (in workdir " + dir + "): permission denied"}},
		{"a directory", driver.StartSpec{Command: []string{dir}}, []string{"command: " + dir + ": is a directory"}},
		{"missing workdir", driver.StartSpec{Command: cmd, Workdir: filepath.Join(dir, "gone")},
			[]string{"workdir: " + filepath.Join(dir, "gone") + ": no such file or directory"}},
		{"workdir is a file", driver.StartSpec{Command: cmd, Workdir: server},
			[]string{"workdir: " + server + ": not a directory"}},
		{"port in the name is left to start", driver.StartSpec{Command: []string{"./srv-${PORT}"}}, nil},
	}
	d := New(nil, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fieldErrors(t, d.Validate(tt.s))
			if len(got) != len(tt.want) {
				t.Fatalf("Validate = %q, want %d errors starting %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d = %q, want it to start %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// fieldErrors unpacks a joined Validate error into its *driver.FieldError
// messages, failing on anything else: callers turn each into a spec field
// error.
func fieldErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []string
	for _, e := range errs {
		var fe *driver.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("Validate error %v (%T) is not a *driver.FieldError", e, e)
		}
		out = append(out, fe.Error())
	}
	return out
}

// Start applies the same rules, so a spec that never passed deploy (one
// stored before a rule existed) cannot run a host command in place of an
// image.
func TestStartRefusesImage(t *testing.T) {
	_, err := New(nil, Options{}).Start(context.Background(), driver.StartSpec{Command: []string{simBin}, Image: "acme/m:1"})
	var se *driver.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "image: the process runtime runs host commands") {
		t.Fatalf("Start with an image = %v, want a StartError naming image", err)
	}
}

func TestNoListerOrAdopter(t *testing.T) {
	var d driver.Driver = New(nil, Options{})
	if _, ok := d.(driver.Lister); ok {
		t.Error("process.Driver is a driver.Lister, but its instances die with the server: update docs/runtime-contract.md if that changed")
	}
	if _, ok := d.(driver.Adopter); ok {
		t.Error("process.Driver is a driver.Adopter, but there is nothing left to adopt after a restart")
	}
	if !driver.CapabilitiesOf(d).OwnsReadiness {
		t.Error("process.Driver must own readiness: Start probes the health path before returning")
	}
}
