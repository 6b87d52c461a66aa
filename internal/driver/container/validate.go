package container

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ember-run/ember/internal/driver"
)

// Validate refuses what this driver will not run: a spec without an image,
// and host paths outside the operator's allow-list (the engine runs as
// root here, so a host mount is root's view of the host).
func (d *Driver) Validate(s driver.StartSpec) error {
	var errs []error
	if s.Image == "" {
		errs = append(errs, &driver.FieldError{Field: "image",
			Reason: `required for runtime "container" (an image present on the engine or pullable from a registry, e.g. ghcr.io/acme/model:1.2)`})
	}
	if s.Task != "" || s.Model != "" {
		errs = append(errs, &driver.FieldError{Field: "task",
			Reason: "task and model configure the onnx runtime; a container runs its image"})
	}
	for i, v := range s.Volumes {
		if v.HostPath != "" && !d.hostPathAllowed(v.HostPath) {
			reason := "host paths are refused unless the operator allows them (ember serve --container-allow-host-path DIR)"
			if len(d.opts.AllowHostPaths) > 0 {
				reason = fmt.Sprintf("%q is not under an allowed host path (%s)", v.HostPath, strings.Join(d.opts.AllowHostPaths, ", "))
			}
			errs = append(errs, &driver.FieldError{Field: fmt.Sprintf("volumes[%d].host_path", i), Reason: reason})
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) hostPathAllowed(p string) bool {
	for _, dir := range d.opts.AllowHostPaths {
		dir = filepath.Clean(dir)
		if p == dir || strings.HasPrefix(p, dir+"/") || dir == "/" {
			return true
		}
	}
	return false
}
