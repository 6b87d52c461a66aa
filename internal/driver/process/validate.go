package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

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
	errs = append(errs, checkHost(s)...)
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

// checkHost checks what the host can tell before anything starts: the
// workdir is a directory, and the command resolves as exec would resolve
// it (a bare name through the server's PATH, a path relative to the
// workdir) to an executable file. The OS's reason goes in the message. A
// command with ${PORT} in its name is left to Start.
func checkHost(s driver.StartSpec) []error {
	var errs []error
	if s.Workdir != "" {
		if fi, err := os.Stat(s.Workdir); err != nil {
			errs = append(errs, &driver.FieldError{Field: "workdir", Reason: fmt.Sprintf("%s: %s", s.Workdir, osReason(err)), Err: err})
			return errs // a relative command cannot be checked either
		} else if !fi.IsDir() {
			errs = append(errs, &driver.FieldError{Field: "workdir", Reason: fmt.Sprintf("%s: %s", s.Workdir, syscall.ENOTDIR), Err: syscall.ENOTDIR})
			return errs
		}
	}
	if len(s.Command) == 0 || s.Command[0] == "" || strings.Contains(s.Command[0], "${") {
		return errs
	}
	name := s.Command[0]
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			reason := "not found in PATH"
			if !errors.Is(err, exec.ErrNotFound) {
				reason = osReason(err)
			}
			errs = append(errs, &driver.FieldError{Field: "command",
				Reason: fmt.Sprintf("%q: %s (the server's PATH; give an absolute path or one relative to workdir)", name, reason), Err: err})
		}
		return errs
	}
	path := name
	if !filepath.IsAbs(path) && s.Workdir != "" {
		path = filepath.Join(s.Workdir, path) // exec runs it after changing into workdir
	}
	if err := executable(path); err != nil {
		where := ""
		if path != name {
			where = " (in workdir " + s.Workdir + ")"
		}
		errs = append(errs, &driver.FieldError{Field: "command", Reason: fmt.Sprintf("%s%s: %s", name, where, osReason(err)), Err: err})
	}
	return errs
}

// executable reports why path cannot be executed: missing, a directory,
// or without execute permission for this user.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	// Execute bits exist but perhaps not for this user.
	if err := syscall.Access(path, 1 /* X_OK */); err != nil {
		return err
	}
	return nil
}

// osReason is the OS's words for err ("no such file or directory",
// "permission denied", "not a directory"), without Go's wrapping.
func osReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT.Error()
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES.Error()
	}
	return err.Error()
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
