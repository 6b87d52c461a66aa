package spec

import "github.com/ember-run/ember/internal/errkind"

// A spec that does not validate is the client's to fix (400 invalid_spec).

func (e *ValidationError) ErrorKind() errkind.Kind { return errkind.Invalid }
func (e *ValidationError) ErrorCode() string       { return "invalid_spec" }
