package onnx

import "github.com/ember-run/ember/internal/driver/process"

// Pooled workers are process instances; specialise re-points their output
// through this interface, which would otherwise fail silently if it drifted.
var _ redirector = (*process.Instance)(nil)
