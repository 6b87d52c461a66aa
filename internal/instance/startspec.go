package instance

import (
	"encoding/json"
	"time"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/spec"
)

// StartSpecFor is what a driver is asked to start for an instance id of fn
// at version: the one translation of a spec into the driver contract, used
// both to start instances and, with id "", to validate a spec at deploy
// (driver.Validator), so the two never disagree. Output and OnPhase are
// the caller's to set. fn must have passed spec validation (its memory
// quantity parses).
func StartSpecFor(fn *spec.Function, version int64, id string) driver.StartSpec {
	s := driver.StartSpec{
		Function: fn.Name, InstanceID: id,
		Labels:  driver.Labels{Function: fn.Name, Version: version, Instance: id},
		Runtime: fn.Runtime, Task: fn.Task, Model: fn.Model, Image: fn.Image, Port: fn.Port, Protocol: fn.Protocol,
		Command: fn.Command, Env: fn.Env.Plain(), SecretEnv: fn.Env.Secrets(), Workdir: fn.Workdir,
		HealthPath: fn.Health.Path, HealthInterval: fn.Health.Interval.D(), HealthTimeout: fn.Health.Timeout.D(),
	}
	if r := fn.Resources; r != nil {
		s.Resources.CPU = r.CPU
		s.Resources.MemoryBytes, _ = r.MemoryBytes() // validated: 0 only when unset
		if r.GPU != nil {
			s.Resources.GPU = driver.GPU{Type: r.GPU.Type, Count: fn.GPUCount(), Shared: r.GPU.Shared}
		}
	}
	s.TaskOptions = taskOptions(fn)
	for _, v := range fn.Volumes {
		s.Volumes = append(s.Volumes, driver.Volume{Name: v.Name, HostPath: v.HostPath, MountPath: v.MountPath, ReadOnly: !v.Writable()})
	}
	return s
}

// taskOptions is the onnx worker's --options for fn's text and batch
// fields ("" when it sets neither).
func taskOptions(fn *spec.Function) string {
	if fn.Text == nil && fn.Batch == nil {
		return ""
	}
	o := map[string]any{}
	if t := fn.Text; t != nil {
		if t.MaxLength > 0 {
			o["max_length"] = t.MaxLength
		}
		if t.Pooling != "" {
			o["pooling"] = t.Pooling
		}
		if t.Normalize != nil {
			o["normalize"] = *t.Normalize
		}
		if t.Padding != "" {
			o["padding"] = t.Padding
		}
	}
	if b := fn.Batch; b != nil {
		o["batch_max_size"] = b.MaxSize
		d := b.MaxDelay.D()
		if d == 0 {
			d = spec.DefaultBatchMaxDelay
		}
		o["batch_max_delay_ms"] = float64(d) / float64(time.Millisecond)
	}
	b, _ := json.Marshal(o) // a map of numbers, strings and bools
	return string(b)
}
