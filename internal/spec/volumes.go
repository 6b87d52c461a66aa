package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Volumes are a function's mounts. The spec writes them either as a list
// of Volume ({name|host_path, mount_path, read_only}) or, shorter, as a
// mapping from mount path to what is mounted there:
//
//	volumes:
//	  /models: model-cache                      # named volume, read-only
//	  /cache: {volume: scratch, read_only: false}  # named volume, read-write
//	  /srv: /srv/shared                         # host path (allow-listed), read-only
//
// A mapping's mounts come in mount-path order. Every mount is read-only
// unless it says read_only: false.
type Volumes []Volume

// volumeRef is the value of a mapping entry written as an object.
type volumeRef struct {
	Volume   string `json:"volume,omitempty"`
	HostPath string `json:"host_path,omitempty"`
	ReadOnly *bool  `json:"read_only,omitempty"`
}

// UnmarshalJSON reads the list or the mapping form; errors name the
// mount ("volumes./models: …").
func (vs *Volumes) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '[':
		var l []Volume
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return fmt.Errorf("volumes: %w", err)
		}
		*vs = l
		return nil
	case len(b) == 0 || b[0] != '{':
		return fmt.Errorf("volumes: want a mapping such as {/models: model-cache} or a list of {name, mount_path}, got %s", clipJSON(b))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	if len(m) > MaxVolumes {
		return fmt.Errorf("volumes: at most %d (got %d)", MaxVolumes, len(m))
	}
	out := make(Volumes, 0, len(m))
	for _, mount := range slices.Sorted(maps.Keys(m)) {
		raw := bytes.TrimSpace(m[mount])
		v := Volume{MountPath: mount}
		switch {
		case len(raw) > 0 && raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("volumes.%s: %w", mount, err)
			}
			if strings.HasPrefix(s, "/") {
				v.HostPath = s
			} else {
				v.Name = s
			}
		case len(raw) > 0 && raw[0] == '{':
			var r volumeRef
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("volumes.%s: want {volume: NAME, read_only: false} or {host_path: /dir, read_only: false}: %w", mount, err)
			}
			v.Name, v.HostPath, v.ReadOnly = r.Volume, r.HostPath, r.ReadOnly
		default:
			return fmt.Errorf("volumes.%s: want a volume name (model-cache), a host path (/srv/models) or {volume: NAME, read_only: false}, got %s", mount, clipJSON(raw))
		}
		out = append(out, v)
	}
	*vs = out
	return nil
}

func clipJSON(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
