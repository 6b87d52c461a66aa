// Package route is the hybrid routing policy: a route names a persistent and
// a serverless target and a policy that picks one from measured traffic. It
// is pure: observations and time are passed in.
package route

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ember-run/ember/internal/spec"
)

// Policy types.
const (
	PolicyQPS  = "qps"
	PolicyCost = "cost"
)

// Defaults applied by (*Route).Default.
const (
	DefaultWindow     = 5 * time.Minute
	DefaultThreshold  = 10.0
	DefaultHysteresis = 0.8
	DefaultHold       = time.Minute
	// DefaultWarmup is the shortest span a QPS is averaged over while the
	// window fills after a start, so the first requests do not read as a
	// flood.
	DefaultWarmup = 30 * time.Second
	// DefaultTimeout bounds a call to a URL target.
	DefaultTimeout = 5 * time.Minute
)

// Route sends calls for Name to one of two targets.
type Route struct {
	// Name is the public name called as /v1/run/{name} or as an OpenAI
	// "model"; same rules as function names.
	Name    string  `json:"name"`
	Targets Targets `json:"targets"`
	Policy  Policy  `json:"policy"`
	// Timeout bounds how long a URL target may take to start its answer
	// (default 5m); beyond it the caller gets 504. A stream that has
	// started runs as long as it lasts. A function target keeps its own
	// timeout.
	Timeout spec.Duration `json:"timeout,omitempty"`
}

// Targets are the two pools.
type Targets struct {
	// Persistent is the always-on pool (min ≥ 1, or an external cluster).
	Persistent Target `json:"persistent"`
	// Serverless is the scale-from-zero pool.
	Serverless Target `json:"serverless"`
}

// Target is an Ember function or an external base URL; exactly one is set.
type Target struct {
	Function string `json:"function,omitempty"`
	// URL is an http(s) base URL; the request path is appended to it.
	URL string `json:"url,omitempty"`
	// USDPerHour and USDPerRequest price a URL target for the cost
	// policy: what the external pool costs per hour whatever the traffic
	// (a reserved cluster) and per call (a hosted API). A function
	// target is priced by Ember's cost model from its spec, its hardware
	// class in the price catalogue and its measured service time.
	USDPerHour    float64 `json:"usd_per_hour,omitempty"`
	USDPerRequest float64 `json:"usd_per_request,omitempty"`
	// Headers are sent to a URL target on every call, e.g. the external
	// service's own credentials: {Authorization: "Bearer ${VLLM_API_KEY}"}.
	// ${NAME} is read from the server's environment when the call is
	// sent, so secrets stay out of the stored route.
	Headers map[string]string `json:"headers,omitempty"`
}

// ListedHourlyCost is a URL target's cost per hour at qps, from its prices.
func (t Target) ListedHourlyCost(qps float64) float64 {
	return t.USDPerHour + t.USDPerRequest*qps*3600
}

// String names the target for logs and headers.
func (t Target) String() string {
	if t.Function != "" {
		return "function " + t.Function
	}
	return t.URL
}

// Policy says how to pick a target.
type Policy struct {
	// Type is "qps" (default) or "cost".
	Type string `json:"type,omitempty"`
	// Window is the span QPS is measured over (default 5m).
	Window spec.Duration `json:"window,omitempty"`
	// Threshold is the QPS above which traffic goes to persistent (default 10).
	Threshold float64 `json:"threshold,omitempty"`
	// Hysteresis is the fraction of the threshold below which traffic
	// returns to serverless (default 0.8: enter above 10, leave below 8).
	Hysteresis float64 `json:"hysteresis,omitempty"`
	// Hold is the least time a choice stands before it may change again
	// (default 1m; "0s" is replaced by the default, use "1ms" for none).
	Hold spec.Duration `json:"hold,omitempty"`
}

// Parse decodes a route from YAML or JSON, rejecting unknown fields,
// applies defaults and validates it.
func Parse(data []byte) (*Route, error) {
	var r Route
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
		msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
		msg = strings.ReplaceAll(msg, "json: unknown field", "unknown field")
		return nil, fmt.Errorf("route: %s", msg)
	}
	r.Default()
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Default fills unset policy fields.
func (r *Route) Default() {
	if r.Timeout == 0 {
		r.Timeout = spec.Duration(DefaultTimeout)
	}
	p := &r.Policy
	if p.Type == "" {
		p.Type = PolicyQPS
	}
	if p.Window == 0 {
		p.Window = spec.Duration(DefaultWindow)
	}
	if p.Threshold == 0 {
		p.Threshold = DefaultThreshold
	}
	if p.Hysteresis == 0 {
		p.Hysteresis = DefaultHysteresis
	}
	if p.Hold == 0 {
		p.Hold = spec.Duration(DefaultHold)
	}
}

// ValidationError lists every problem found in a route.
type ValidationError struct {
	Route string
	Errs  []*spec.FieldError
}

func (e *ValidationError) Error() string {
	head := "invalid route"
	if e.Route != "" {
		head += " " + strconv.Quote(e.Route)
	}
	return spec.JoinFieldErrors(head, e.Errs)
}

// Validate checks a defaulted route; the error is a *ValidationError.
func (r *Route) Validate() error {
	var errs []*spec.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &spec.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case r.Name == "":
		add("name", "required")
	case !spec.ValidName(r.Name):
		add("name", "must match [a-z0-9][a-z0-9-]* optionally as owner/name, at most 127 characters (got %q)", r.Name)
	}
	for _, t := range []struct {
		field string
		t     Target
	}{{"targets.persistent", r.Targets.Persistent}, {"targets.serverless", r.Targets.Serverless}} {
		switch {
		case t.t.Function == "" && t.t.URL == "":
			add(t.field, "set function or url")
		case t.t.Function != "" && t.t.URL != "":
			add(t.field, "set function or url, not both")
		case t.t.Function != "" && !spec.ValidName(t.t.Function):
			add(t.field+".function", "not a valid function name (got %q)", t.t.Function)
		case t.t.Function == r.Name && r.Name != "":
			add(t.field+".function", "a route cannot target itself")
		case t.t.URL != "":
			u, err := url.Parse(t.t.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(t.field+".url", "must be an http(s) base URL (got %q)", t.t.URL)
			}
		}
		if len(t.t.Headers) > 0 && t.t.URL == "" {
			add(t.field+".headers", "only a url target takes headers")
		}
		for _, name := range slices.Sorted(maps.Keys(t.t.Headers)) {
			if !validHeaderName(name) || strings.EqualFold(name, "Host") {
				add(t.field+".headers", "not a header name Ember can send (got %q)", name)
			}
		}
		switch {
		case t.t.USDPerHour < 0 || t.t.USDPerRequest < 0:
			add(t.field, "usd_per_hour and usd_per_request must be ≥ 0 (got %g, %g)", t.t.USDPerHour, t.t.USDPerRequest)
		case t.t.Function != "" && (t.t.USDPerHour != 0 || t.t.USDPerRequest != 0):
			add(t.field, "usd_per_hour and usd_per_request price url targets; a function is priced from its hardware class in the price catalogue")
		case t.t.URL != "" && r.Policy.Type == PolicyCost && t.t.USDPerHour == 0 && t.t.USDPerRequest == 0:
			add(t.field, "the cost policy needs usd_per_hour or usd_per_request for a url target")
		}
	}
	if pt, st := r.Targets.Persistent, r.Targets.Serverless; pt.Function == st.Function && pt.URL == st.URL && (pt.Function != "" || pt.URL != "") {
		add("targets", "persistent and serverless are the same target")
	}
	p := r.Policy
	if p.Type != PolicyQPS && p.Type != PolicyCost {
		add("policy.type", "must be qps or cost (got %q)", p.Type)
	}
	if p.Window.D() < time.Second {
		add("policy.window", "must be ≥ 1s (got %s)", p.Window.D())
	}
	if p.Threshold <= 0 {
		add("policy.threshold", "must be > 0 (got %g)", p.Threshold)
	}
	if p.Hysteresis <= 0 || p.Hysteresis > 1 {
		add("policy.hysteresis", "must be in (0, 1] (got %g)", p.Hysteresis)
	}
	if r.Timeout.D() < 0 {
		add("timeout", "must be ≥ 0 (got %s)", r.Timeout.D())
	}
	if p.Hold.D() < 0 {
		add("policy.hold", "must be ≥ 0 (got %s)", p.Hold.D())
	}
	if len(errs) > 0 {
		return &ValidationError{Route: r.Name, Errs: errs}
	}
	return nil
}

// validHeaderName reports whether name is an HTTP token (RFC 9110 5.1).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
