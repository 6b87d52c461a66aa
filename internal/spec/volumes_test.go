package spec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestVolumesForms(t *testing.T) {
	no := false
	tests := []struct {
		name, doc string
		want      Volumes
		err       string // substring; "" = valid
	}{
		{"mapping: named volume, read-only by default", `volumes: {/models: model-cache}`,
			Volumes{{Name: "model-cache", MountPath: "/models"}}, ""},
		{"mapping: read-write asked for", `volumes: {/cache: {volume: scratch, read_only: false}}`,
			Volumes{{Name: "scratch", MountPath: "/cache", ReadOnly: &no}}, ""},
		{"mapping: host path", `volumes: {/srv: /srv/shared, /a: weights}`,
			Volumes{{Name: "weights", MountPath: "/a"}, {HostPath: "/srv/shared", MountPath: "/srv"}}, ""},
		{"list form still works", `volumes: [{name: m, mount_path: /m}]`,
			Volumes{{Name: "m", MountPath: "/m"}}, ""},
		{"mapping: unknown key", `volumes: {/m: {volume: m, readonly: false}}`, nil, `volumes./m: want {volume: NAME, read_only: false}`},
		{"mapping: number", `volumes: {/m: 3}`, nil, `volumes./m: want a volume name (model-cache), a host path (/srv/models) or {volume: NAME, read_only: false}, got 3`},
		{"mapping: bad mount path", `volumes: {models: m}`, nil, `volumes[0].mount_path: must be an absolute, clean path`},
		{"mapping: bad name", `volumes: {/m: Models}`, nil, `volumes[0].name: must match`},
		{"list: unknown field keeps its did-you-mean", `volumes: [{name: m, mount_path: /m, readonly: true}]`, nil, `unknown field "volumes[0].readonly" (did you mean "read_only"?)`},
		{"scalar", `volumes: models`, nil, `volumes: want a mapping such as {/models: model-cache}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte("name: a\nruntime: container\nimage: m\n" + tt.doc))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Volumes, tt.want) {
				t.Fatalf("volumes = %+v, want %+v", f.Volumes, tt.want)
			}
			// Stored as the list form, and read back the same.
			b, _ := json.Marshal(f)
			var back Function
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Volumes, tt.want) {
				t.Fatalf("round trip: %+v, %v", back.Volumes, err)
			}
		})
	}
}

func TestVolumeWritable(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		ro   *bool
		want bool
	}{{nil, false}, {&yes, false}, {&no, true}} {
		if got := (Volume{ReadOnly: tt.ro}).Writable(); got != tt.want {
			t.Errorf("Writable(read_only=%v) = %v", tt.ro, got)
		}
	}
}
