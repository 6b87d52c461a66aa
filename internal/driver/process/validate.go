package process

import (
	"errors"

	"github.com/ember-run/ember/internal/driver"
)

// Validate refuses what a host process cannot be: it runs a command, so it
// needs one, and it has no image to pull and no filesystem of its own to
// mount volumes in. Resources are accepted as metering hints; the process
// runtime enforces no limit.
func (d *Driver) Validate(s driver.StartSpec) error {
	var errs []error
	if len(s.Command) == 0 || s.Command[0] == "" {
		errs = append(errs, &driver.FieldError{Field: "command",
			Reason: `required for runtime "process" (argv of the instance, e.g. ["./server", "--port", "${PORT}"])`})
	}
	if s.Image != "" {
		errs = append(errs, &driver.FieldError{Field: "image",
			Reason: "the process runtime runs host commands; use runtime: container for images"})
	}
	if s.Port != 0 {
		errs = append(errs, &driver.FieldError{Field: "port",
			Reason: "the process runtime picks the port and passes it as $PORT; port is for runtime: container"})
	}
	if len(s.Volumes) > 0 {
		errs = append(errs, &driver.FieldError{Field: "volumes",
			Reason: "the process runtime runs in the host's filesystem (see workdir); use runtime: container for volumes"})
	}
	return errors.Join(errs...)
}

// Capabilities: Start probes the instance's health path over loopback and
// returns only once it answers, so callers route to it at once.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{OwnsReadiness: true}
}

// The process driver is deliberately no driver.Lister or driver.Adopter:
// its instances die with the server (Pdeathsig, and the Guard for what they
// fork), so a restarted server has nothing of its own to find, and a
// leader on another node could not reach a loopback process anyway.
var (
	_ driver.Validator          = (*Driver)(nil)
	_ driver.CapabilityReporter = (*Driver)(nil)
)
