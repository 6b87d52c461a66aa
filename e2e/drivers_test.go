package e2e

import (
	"strings"
	"testing"
)

// TestDeployRuntimeValidation deploys specs that the spec accepts but the
// chosen runtime cannot run: each driver refuses them at deploy with a 400
// that names the field, and nothing is stored or started.
func TestDeployRuntimeValidation(t *testing.T) {
	s := startServer(t, "")
	tests := []struct {
		name, body, want string
	}{
		{"image on process", "name: img\nimage: ghcr.io/acme/sim:1\ncommand: [x]",
			"image: the process runtime runs host commands; use runtime: container for images"},
		{"volume on process", "name: vol\ncommand: [x]\nvolumes: [{host_path: /srv/models, mount_path: /models, read_only: true}]",
			"volumes: the process runtime"},
		{"process without command", "name: nocmd", "command: required for runtime \\\"process\\\""},
		{"onnx without task", "name: ocr\nruntime: onnx\nmodel: ./m", "task: required for runtime \\\"onnx\\\""},
		{"unknown runtime", "name: dock\nruntime: docker\nimage: x", "runtime: unknown runtime \\\"docker\\\" (supported: container, onnx, process)"},
		{"bad volume", "name: vol2\nimage: x\nruntime: container\nvolumes: [{name: m, mount_path: models}]", "volumes[0].mount_path: must be an absolute, clean path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.call("POST", "/v1/functions", tt.body)
			if r.status != 400 || !strings.Contains(string(r.body), tt.want) || !strings.Contains(string(r.body), "invalid_spec") {
				t.Errorf("deploy = %d %s, want 400 invalid_spec containing %q", r.status, r.body, tt.want)
			}
		})
	}
	if fns := s.call("GET", "/v1/functions", ""); fns.status != 200 || strings.Contains(string(fns.body), `"name"`) {
		t.Errorf("functions after refused deploys = %d %s, want none", fns.status, fns.body)
	}
}
