package process

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/driver"
)

func TestBaseEnv(t *testing.T) {
	server := []string{
		"PATH=/usr/bin", "HOME=/home/ember", "LANG=C.UTF-8", "TZ=UTC",
		"EMBER_API_KEY=ember_x_y", "EMBER_DATA_DIR=/var/lib/ember", "SECRET_TOKEN=s3cret",
		"AWS_SECRET_ACCESS_KEY=k", "LD_LIBRARY_PATH=/opt/cuda/lib", "malformed",
	}
	for _, tt := range []struct {
		name    string
		inherit []string
		want    []string
	}{
		{"minimal", nil, []string{"PATH=/usr/bin", "HOME=/home/ember", "LANG=C.UTF-8", "TZ=UTC"}},
		{"inherit one", []string{"LD_LIBRARY_PATH"}, []string{"PATH=/usr/bin", "HOME=/home/ember", "LANG=C.UTF-8", "TZ=UTC", "LD_LIBRARY_PATH=/opt/cuda/lib"}},
		{"EMBER_ never", []string{"EMBER_API_KEY"}, []string{"PATH=/usr/bin", "HOME=/home/ember", "LANG=C.UTF-8", "TZ=UTC"}},
		{"unset inherited name", []string{"NOT_SET"}, []string{"PATH=/usr/bin", "HOME=/home/ember", "LANG=C.UTF-8", "TZ=UTC"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, BaseEnv(server, tt.inherit)); d != "" {
				t.Errorf("BaseEnv (-want +got):\n%s", d)
			}
		})
	}
}

type fakeSecrets map[string]string

func (f fakeSecrets) SecretValue(_ context.Context, name string) ([]byte, bool, error) {
	if name == "broken" {
		return nil, false, errors.New("disk on fire")
	}
	v, ok := f[name]
	return []byte(v), ok, nil
}

func TestEnviron(t *testing.T) {
	d := New(nil, Options{Env: []string{"PATH=/bin"}, Secrets: fakeSecrets{"hf": "hf_value"}})
	s := driver.StartSpec{Function: "f", InstanceID: "f-1",
		Env:       map[string]string{"B": "x${PORT}", "A": "1"},
		SecretEnv: map[string]string{"HF_TOKEN": "hf"},
	}
	secrets, err := d.resolveSecrets(context.Background(), s.SecretEnv)
	if err != nil {
		t.Fatal(err)
	}
	got := d.environ(s, secrets, "4000", func(v string) string { return strings.ReplaceAll(v, "${PORT}", "4000") })
	want := []string{"PATH=/bin", "A=1", "B=x4000", "HF_TOKEN=hf_value", "PORT=4000", "EMBER_FUNCTION=f", "EMBER_INSTANCE=f-1", "EMBER_READY_FD=3"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("environ (-want +got):\n%s", d)
	}

	for _, tt := range []struct{ secret, want string }{
		{"missing", `env X: secret "missing" does not exist (ember secrets set missing)`},
		{"broken", `env X: cannot read secret "broken"`},
	} {
		_, err := d.resolveSecrets(context.Background(), map[string]string{"X": tt.secret})
		var se *driver.StartError
		if !errors.As(err, &se) || se.Reason != tt.want {
			t.Errorf("resolveSecrets(%s) = %v, want a StartError %q", tt.secret, err, tt.want)
		}
	}
	if _, err := New(nil, Options{}).resolveSecrets(context.Background(), map[string]string{"X": "hf"}); err == nil || !strings.Contains(err.Error(), "no secret store") {
		t.Errorf("resolveSecrets without a store = %v", err)
	}
}

// The allocator's GPUs reach the process as CUDA_VISIBLE_DEVICES, over a
// value the spec set itself (exec keeps the last of a duplicated name).
func TestEnvironGPUs(t *testing.T) {
	d := New(nil, Options{Env: []string{"PATH=/bin"}})
	s := driver.StartSpec{Function: "f", InstanceID: "f-1",
		Env:        map[string]string{"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
		GPUDevices: []string{"GPU-aaaa", "GPU-bbbb"},
	}
	got := d.environ(s, nil, "4000", func(v string) string { return v })
	want := []string{"PATH=/bin", "CUDA_VISIBLE_DEVICES=0,1,2,3", "CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb",
		"PORT=4000", "EMBER_FUNCTION=f", "EMBER_INSTANCE=f-1", "EMBER_READY_FD=3"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("environ (-want +got):\n%s", d)
	}
}
