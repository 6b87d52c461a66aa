package proxy

import "github.com/ember-run/ember/internal/errkind"

// An instance that failed before answering is the upstream's fault (502).

func (e *UpstreamError) ErrorKind() errkind.Kind { return errkind.Upstream }
func (e *UpstreamError) ErrorCode() string       { return "upstream_error" }
