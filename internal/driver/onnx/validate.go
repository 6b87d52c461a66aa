package onnx

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ember-run/ember/internal/driver"
)

// Tasks are the tasks the built-in worker serves (`ember worker onnx --task`).
var Tasks = []string{"ocr", "text-classification", "embeddings"}

// Validate refuses what the built-in worker cannot serve: it needs a
// supported task and a model, and, being a host process like any other,
// has no image and no volumes.
func (d *Driver) Validate(s driver.StartSpec) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &driver.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if s.Model == "" {
		add("model", `required for runtime "onnx" (npm:<package>@<version> or a local directory)`)
	}
	switch {
	case s.Task == "":
		add("task", `required for runtime "onnx" (supported: %s)`, strings.Join(Tasks, ", "))
	case !slices.Contains(Tasks, s.Task):
		add("task", "unsupported task %q (supported: %s)", s.Task, strings.Join(Tasks, ", "))
	}
	if s.TaskOptions != "" && s.Task == "ocr" {
		add("text", "text and batch options are for the text tasks (text-classification, embeddings), not %q", s.Task)
	}
	if s.Image != "" {
		add("image", "the onnx runtime runs the built-in ONNX worker on the host; use runtime: container for images")
	}
	if len(s.Volumes) > 0 {
		add("volumes", "the onnx runtime runs in the host's filesystem; use runtime: container for volumes")
	}
	return errors.Join(errs...)
}

// Capabilities: a start returns once the worker has loaded the model and
// answered its health check (through the process driver's probe).
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{OwnsReadiness: true}
}

// Like the process driver it starts workers through, the onnx driver is no
// driver.Lister: its workers die with the server.
var (
	_ driver.Validator          = (*Driver)(nil)
	_ driver.CapabilityReporter = (*Driver)(nil)
)
