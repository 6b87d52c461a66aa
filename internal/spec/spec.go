// Package spec defines the Function spec: its fields, defaults, decoding from
// YAML or JSON, and validation with errors that name the field and the reason.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Runtimes Ember knows how to start.
const (
	RuntimeProcess = "process"
	RuntimeONNX    = "onnx"
	// RuntimeContainer runs Image through a Docker Engine API.
	RuntimeContainer = "container"
)

// Protocols an instance may speak (protocol:).
const (
	// ProtocolHTTP: Ember forwards requests to the instance as they are.
	ProtocolHTTP = "http"
	// ProtocolCog: the instance is a Cog server (an image built by `cog
	// build`); Ember speaks Cog's HTTP API to it (health-check,
	// predictions, openapi.json). Container runtime only.
	ProtocolCog = "cog"
	// CogHealthPath is Cog's readiness endpoint: JSON {"status": READY|BUSY|STARTING|SETUP_FAILED|DEFUNCT}.
	CogHealthPath = "/health-check"
	// DefaultCogPort is where a Cog server listens unless port says otherwise.
	DefaultCogPort = 5000
)

// Defaults applied by (*Function).Default. They are the documented values of
// the spec reference in README.md.
const (
	DefaultHealth       = "/health"
	DefaultPredictPath  = "/predict"
	DefaultMax          = 4
	DefaultTarget       = 0.7
	DefaultIdleTimeout  = 120 * time.Second
	DefaultTimeout      = 300 * time.Second
	DefaultStartTimeout = 60 * time.Second
	DefaultQueue        = 1000
	// DefaultMaxBodyBytes bounds request bodies the gateway accepts for a
	// function unless the spec says otherwise.
	DefaultMaxBodyBytes = 32 << 20
)

// Function is one deployable unit: a model server plus its scaling policy.
type Function struct {
	// Name is [a-z0-9][a-z0-9-]*, optionally namespaced owner/name.
	Name string `json:"name"`
	// Runtime is "process" (any HTTP server started as a local process) or "onnx".
	Runtime string `json:"runtime"`
	// Command is the argv of the instance; ${PORT} is expanded.
	Command []string `json:"command,omitempty"`
	// Env is added to the instance's environment: literal values, or
	// {secret: NAME} references resolved when an instance starts.
	Env Env `json:"env,omitempty"`
	// Workdir is the instance's working directory (relative to the server's).
	Workdir string `json:"workdir,omitempty"`
	// Health is the readiness probe: ready when GET Health.Path returns
	// 2xx. Written as the path alone or {path, interval, timeout}.
	Health HealthCheck `json:"health,omitempty"`
	// PredictPath is where async jobs POST their input.
	PredictPath string `json:"predict_path,omitempty"`
	// Task and Model configure the built-in onnx runtime.
	Task  string `json:"task,omitempty"`
	Model string `json:"model,omitempty"`
	// Text configures the onnx runtime's text tasks (text-classification,
	// embeddings).
	Text *TextOptions `json:"text,omitempty"`
	// Batch turns on dynamic batching in the onnx runtime's text tasks:
	// concurrent requests to one instance run as one batch.
	Batch *Batch `json:"batch,omitempty"`
	// Image is the OCI image a container runtime runs (refused by process
	// and onnx, which run host commands).
	Image string `json:"image,omitempty"`
	// Port is the port the image listens on inside its container (bridge
	// networking; default 8080); the instance also gets it as $PORT.
	Port int `json:"port,omitempty"`
	// Volumes are mounted into a container's filesystem (refused by
	// process and onnx, which share the host's).
	Volumes Volumes `json:"volumes,omitempty"`
	// Protocol is how Ember talks to the instance: http (default: requests
	// are forwarded as they are) or cog (Cog's predictions API; runtime
	// container only, port 5000 and scaling.concurrency 1 by default).
	// "" is http, and stays "" so that normalized specs do not change.
	Protocol string `json:"protocol,omitempty"`

	Scaling Scaling `json:"scaling"`
	// Timeout bounds one request, queue wait included.
	Timeout Duration `json:"timeout"`
	// StartTimeout bounds an instance's start until ready.
	StartTimeout Duration `json:"start_timeout"`
	// Retries is for idempotent or async work.
	Retries int `json:"retries,omitempty"`
	// MaxBodyBytes bounds the request body accepted for this function.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// Resources is what an instance occupies: its hardware class for
	// metering, and limits a container runtime enforces.
	Resources *Resources `json:"resources,omitempty"`
	// Budget limits what the function may spend per UTC day, metered.
	Budget *Budget `json:"budget,omitempty"`
	// RateLimit bounds calls to this function across all callers.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// given is what Parse saw set in the document, so that Default and
	// Validate, called again later (by the controller at deploy), keep an
	// explicit 0. nil for specs built in Go.
	given *presence
}

// Budget actions.
const (
	BudgetWarn        = "warn"
	BudgetCap         = "cap"
	BudgetScaleToZero = "scale-to-zero"
)

// Budget is a per-function daily spending limit, checked by the controller
// against metered usage. At least one limit must be set; the budget is over
// when any set limit is reached.
type Budget struct {
	// USDPerDay limits the metered cost (instance-seconds at the hardware
	// class's price) per UTC day.
	USDPerDay float64 `json:"usd_per_day,omitempty"`
	// GPUSecondsPerDay limits instance-seconds × GPUs per UTC day.
	GPUSecondsPerDay float64 `json:"gpu_seconds_per_day,omitempty"`
	// Action when over: warn (log and metric; the default), cap (at most
	// one instance) or scale-to-zero (stop and start none), until the day ends.
	Action string `json:"action,omitempty"`
}

// Resources describes what one instance occupies.
type Resources struct {
	// CPU is in cores (0.5 = half a core); 0 = not set.
	CPU float64 `json:"cpu,omitempty"`
	// Memory is bytes with an optional unit: "512Mi", "2Gi", "1G".
	Memory string `json:"memory,omitempty"`
	GPU    *GPU   `json:"gpu,omitempty"`
}

// GPU is an accelerator request: Count whole GPUs of Type per instance.
type GPU struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
	// Shared lets instances that ask for it share GPUs with each other
	// (small models that fit together in one GPU's memory); without it an
	// instance's GPUs are its own.
	Shared bool `json:"shared,omitempty"`
}

// Scaling is the per-function scaling policy.
type Scaling struct {
	// Min instances are kept ready at all times (provisioned).
	Min int `json:"min"`
	// Max bounds the number of instances.
	Max int `json:"max"`
	// Concurrency is the hard cap of in-flight requests per instance (0 = unlimited).
	Concurrency int `json:"concurrency"`
	// Target is the utilisation of Concurrency the autoscaler aims for.
	Target float64 `json:"target"`
	// IdleTimeout is the keep-warm window before an idle instance is stopped;
	// IdleAuto ("auto") learns it from the function's own idle times
	// (internal/keepalive) and pre-warms before likely arrivals.
	IdleTimeout Duration `json:"idle_timeout"`
	// ColdStartWorth is what one cold start's wait is worth to the user,
	// as this much of the function's own hardware time (a 10 min worth on
	// a $0.001/s GPU is $0.60). The learned keep-warm policy (idle_timeout:
	// auto) keeps an instance idle while that costs less than the cold
	// starts it avoids. 0: the server's --default-cold-start-worth
	// (keepalive.DefaultColdStartWorth, 10m).
	ColdStartWorth Duration `json:"cold_start_worth,omitempty"`
	// Buffer spare ready instances are kept while traffic flows.
	Buffer int `json:"buffer,omitempty"`
	// Queue bounds the requests waiting for a slot.
	Queue int `json:"queue"`
	// Schedule windows raise Min ahead of known peaks.
	Schedule []Window `json:"schedule,omitempty"`
}

// Window raises the minimum to Min for Duration after each firing of Cron.
type Window struct {
	Cron     string   `json:"cron"`
	Duration Duration `json:"duration"`
	Min      int      `json:"min"`
}

// Duration is a time.Duration that reads "120s" or a number of seconds and
// writes the string form.
type Duration time.Duration

// MaxColdStartWorth bounds scaling.cold_start_worth: a day of hardware time
// for one cold start already means "never scale to zero".
const MaxColdStartWorth = 24 * time.Hour

// IdleAuto is scaling.idle_timeout: auto, the learned keep-warm policy. It
// is negative so that code reading it as a window (the instance manager's
// idle expiry) stops an instance as soon as the decision no longer wants it:
// the controller holds instances for the learned window instead.
const IdleAuto Duration = -1

// Auto reports whether d is "auto" (IdleAuto).
func (d Duration) Auto() bool { return d == IdleAuto }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is "auto" for IdleAuto, else the Go duration ("2m0s").
func (d Duration) String() string {
	if d.Auto() {
		return "auto"
	}
	return time.Duration(d).String()
}

// ParseIdle reads an idle timeout as a flag or setting: "auto" or a Go
// duration ≥ 0 ("120s", "10m", "0" = stop as soon as idle).
func ParseIdle(s string) (Duration, error) {
	if s == "auto" {
		return IdleAuto, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid idle timeout %q (want auto or a duration ≥ 0 such as 120s, 10m)", s)
	}
	return Duration(v), nil
}

// MarshalJSON writes the duration as a Go duration string ("2m0s"), or "auto".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts "120s", "2m", or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "auto" {
			*d = IdleAuto // only scaling.idle_timeout accepts it (Validate)
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"2m\")", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("invalid duration %s (want e.g. \"30s\" or seconds)", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// Parse decodes a spec from YAML or JSON (JSON is YAML), rejecting unknown
// fields (all of them, by full path, with a did-you-mean) and values of the
// wrong type (in the spec's words, never Go's), applies defaults to the fields it leaves out and validates it. A
// field written as 0 keeps its own meaning (the table in README.md's spec
// reference) and is never replaced by the default.
func Parse(data []byte) (*Function, error) {
	var f Function
	if err := decode(data, &f); err != nil {
		return nil, err
	}
	f.Default()
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// presence records which fields with a non-zero default a document sets
// (JSON null counts as unset), so that an explicit 0 is told from absence
// without pointer fields in Function.
type presence struct {
	Scaling *struct {
		Max         *json.RawMessage `json:"max"`
		Concurrency *json.RawMessage `json:"concurrency"`
		Target      *json.RawMessage `json:"target"`
		IdleTimeout *json.RawMessage `json:"idle_timeout"`
		// ColdStartWorth: 0 written is refused rather than read as unset.
		ColdStartWorth *json.RawMessage `json:"cold_start_worth"`
		Queue          *json.RawMessage `json:"queue"`
	} `json:"scaling"`
	Timeout      *json.RawMessage `json:"timeout"`
	StartTimeout *json.RawMessage `json:"start_timeout"`
	MaxBodyBytes *json.RawMessage `json:"max_body_bytes"`
	Budget       *struct {
		USDPerDay        *json.RawMessage `json:"usd_per_day"`
		GPUSecondsPerDay *json.RawMessage `json:"gpu_seconds_per_day"`
	} `json:"budget"`
	RateLimit *struct {
		Burst *json.RawMessage `json:"burst"`
	} `json:"rate_limit"`
}

// IdleTimeoutGiven reports whether the document Parse read set
// scaling.idle_timeout, so a server-wide default applies only where it did not.
func (f *Function) IdleTimeoutGiven() bool {
	return f.given == nil || f.given.scaling("idle_timeout")
}

// scaling reports whether the document set scaling.<field>.
func (p presence) scaling(field string) bool {
	if p.Scaling == nil {
		return false
	}
	switch field {
	case "max":
		return p.Scaling.Max != nil
	case "target":
		return p.Scaling.Target != nil
	case "idle_timeout":
		return p.Scaling.IdleTimeout != nil
	case "queue":
		return p.Scaling.Queue != nil
	case "concurrency":
		return p.Scaling.Concurrency != nil
	case "cold_start_worth":
		return p.Scaling.ColdStartWorth != nil
	}
	return false
}

func cleanYAMLError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	msg = strings.ReplaceAll(msg, "json: unknown field", "unknown field")
	msg = strings.ReplaceAll(msg, "Go struct field ", "")
	return errors.New(msg)
}

// Default fills unset fields with their documented defaults. For a spec from
// Parse these are the fields the document left out; for one built in Go,
// where 0 cannot be told from unset, every zero field.
func (f *Function) Default() {
	var given presence
	if f.given != nil {
		given = *f.given
	}
	if f.Runtime == "" {
		f.Runtime = RuntimeProcess
	}
	if f.Health.Path == "" {
		f.Health.Path = DefaultHealth
		if f.Protocol == ProtocolCog {
			f.Health.Path = CogHealthPath
		}
	}
	if f.PredictPath == "" {
		f.PredictPath = DefaultPredictPath
	}
	s := &f.Scaling
	if f.Protocol == ProtocolCog {
		// A Cog server runs one prediction at a time (it answers 409 to a
		// second), and listens on 5000.
		if f.Port == 0 {
			f.Port = DefaultCogPort
		}
		if s.Concurrency == 0 && !given.scaling("concurrency") {
			s.Concurrency = 1
		}
	}
	if s.Max == 0 && !given.scaling("max") {
		s.Max = max(DefaultMax, s.Min)
	}
	if s.Target == 0 && !given.scaling("target") {
		s.Target = DefaultTarget
	}
	if s.IdleTimeout == 0 && !given.scaling("idle_timeout") {
		s.IdleTimeout = Duration(DefaultIdleTimeout)
	}
	if s.Queue == 0 && !given.scaling("queue") {
		s.Queue = DefaultQueue
	}
	if f.Timeout == 0 && given.Timeout == nil {
		f.Timeout = Duration(DefaultTimeout)
	}
	if f.StartTimeout == 0 && given.StartTimeout == nil {
		f.StartTimeout = Duration(DefaultStartTimeout)
	}
	if f.MaxBodyBytes == 0 && given.MaxBodyBytes == nil {
		f.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if f.Budget != nil && f.Budget.Action == "" {
		f.Budget.Action = BudgetWarn
	}
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9-]*)?$`)
	runtimeRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	pathRE    = regexp.MustCompile(`^/[^\s?#]*$`)
)

// FieldError names the field at fault and why.
type FieldError struct {
	Field  string
	Reason string
	// unknown marks a field the spec does not have: it reads
	// `unknown field "a.b"` followed by Reason (a did-you-mean or nothing).
	unknown bool
}

func (e *FieldError) Error() string {
	if e.unknown {
		return fmt.Sprintf("unknown field %q%s", e.Field, e.Reason)
	}
	return e.Field + ": " + e.Reason
}

// ValidationError lists every problem found in a spec.
type ValidationError struct {
	Function string
	Errs     []*FieldError
}

func (e *ValidationError) Error() string {
	head := "invalid spec"
	if e.Function != "" {
		head += " for " + strconv.Quote(e.Function)
	}
	return JoinFieldErrors(head, e.Errs)
}

// JoinFieldErrors renders "head: field: reason; field: reason", the one
// format of every validation error (function specs, routes).
func JoinFieldErrors(head string, errs []*FieldError) string {
	var b strings.Builder
	b.WriteString(head)
	for i, fe := range errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

// ValidName reports whether name is a valid function name.
func ValidName(name string) bool { return len(name) <= 127 && nameRE.MatchString(name) }

// Validate checks a defaulted spec. The error is a *ValidationError that
// lists every field at fault.
//
// For a spec from Parse it knows which fields the document set: an explicit
// 0 where leaving the field out would mean something else is refused, not
// guessed.
func (f *Function) Validate() error {
	var given presence
	if f.given != nil {
		given = *f.given
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case f.Name == "":
		add("name", "required")
	case !ValidName(f.Name):
		add("name", "must match [a-z0-9][a-z0-9-]* optionally as owner/name, at most 127 characters (got %q)", f.Name)
	}
	// Only the form of runtime, image and volumes is checked here: what a
	// runtime can run (a command, a task, an image) is its driver's to say
	// (driver.Validator), at deploy.
	if !runtimeRE.MatchString(f.Runtime) {
		add("runtime", "must be a runtime name such as process or onnx (got %q)", f.Runtime)
	}
	validateImage(f.Image, add)
	validateVolumes(f.Volumes, add)
	switch f.Protocol {
	case "", ProtocolHTTP:
	case ProtocolCog:
		if f.Runtime != RuntimeContainer {
			add("protocol", "cog needs runtime: container (a Cog server is an image built by cog build; got runtime %q)", f.Runtime)
		}
	default:
		add("protocol", "must be http or cog (got %q)", f.Protocol)
	}
	if f.Port < 0 || f.Port > 65535 {
		add("port", "must be in [1, 65535] (got %d)", f.Port)
	}
	validateEnv(f.Env, add)
	validateHealth(f.Health, add)
	if !pathRE.MatchString(f.PredictPath) {
		add("predict_path", "must be an absolute path such as /predict (got %q)", f.PredictPath)
	}
	validateText(f, add)
	s := f.Scaling
	if s.Min < 0 {
		add("scaling.min", "must be ≥ 0 (got %d)", s.Min)
	}
	if s.Max < 1 {
		add("scaling.max", "must be ≥ 1 (got %d)", s.Max)
	}
	if s.Max < s.Min {
		add("scaling.max", "must be ≥ scaling.min (got %d < %d)", s.Max, s.Min)
	}
	if s.Concurrency < 0 {
		add("scaling.concurrency", "must be ≥ 0, 0 meaning unlimited (got %d)", s.Concurrency)
	}
	if s.Target <= 0 || s.Target > 1 {
		add("scaling.target", "must be in (0, 1] (got %g)", s.Target)
	}
	if s.IdleTimeout < 0 && !s.IdleTimeout.Auto() {
		add("scaling.idle_timeout", "must be auto or ≥ 0 (got %s)", s.IdleTimeout.D())
	}
	if s.ColdStartWorth < 0 || s.ColdStartWorth.D() > MaxColdStartWorth ||
		(s.ColdStartWorth == 0 && f.given != nil && f.given.scaling("cold_start_worth")) {
		add("scaling.cold_start_worth", "must be a duration of hardware time in (0, %s] (got %s; leave it out for the server's --default-cold-start-worth)", MaxColdStartWorth, s.ColdStartWorth.D())
	}
	if s.Buffer < 0 {
		add("scaling.buffer", "must be ≥ 0 (got %d)", s.Buffer)
	}
	if s.Queue < 0 {
		add("scaling.queue", "must be ≥ 0 (got %d)", s.Queue)
	}
	if s.Queue == 0 && s.Min == 0 {
		add("scaling.queue", "0 (fail fast: no call waits for a slot) needs scaling.min ≥ 1, or no call could wake the function from zero; omit it for the default %d", DefaultQueue)
	}
	for i, w := range s.Schedule {
		field := fmt.Sprintf("scaling.schedule[%d]", i)
		if _, err := ParseCron(w.Cron); err != nil {
			add(field+".cron", "%v", err)
		}
		if w.Duration <= 0 {
			add(field+".duration", "must be > 0 (got %s)", w.Duration)
		}
		if w.Min < 0 || w.Min > s.Max {
			add(field+".min", "must be in [0, scaling.max=%d] (got %d)", s.Max, w.Min)
		}
	}
	if f.Timeout <= 0 {
		add("timeout", "must be > 0 (got %s)", f.Timeout)
	}
	if f.StartTimeout <= 0 {
		add("start_timeout", "must be > 0 (got %s)", f.StartTimeout)
	}
	if f.Retries < 0 || f.Retries > 100 {
		add("retries", "must be in [0, 100] (got %d)", f.Retries)
	}
	if f.MaxBodyBytes < 1 {
		add("max_body_bytes", "must be ≥ 1 (got %d; omit it for the default %d)", f.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	validateResources(f.Resources, add)
	if b := f.Budget; b != nil {
		setUSD := given.Budget != nil && given.Budget.USDPerDay != nil
		setGPU := given.Budget != nil && given.Budget.GPUSecondsPerDay != nil
		if b.USDPerDay < 0 || (b.USDPerDay == 0 && setUSD) {
			add("budget.usd_per_day", "must be > 0 (got %g; omit it for no cost limit, use action: scale-to-zero to stop spending)", b.USDPerDay)
		}
		if b.GPUSecondsPerDay < 0 || (b.GPUSecondsPerDay == 0 && setGPU) {
			add("budget.gpu_seconds_per_day", "must be > 0 (got %g; omit it for no GPU-seconds limit)", b.GPUSecondsPerDay)
		}
		if b.USDPerDay <= 0 && b.GPUSecondsPerDay <= 0 {
			add("budget", "set usd_per_day or gpu_seconds_per_day (or both)")
		}
		if b.GPUSecondsPerDay > 0 && (f.Resources == nil || f.Resources.GPU == nil) {
			add("budget.gpu_seconds_per_day", "needs resources.gpu (a CPU function uses no GPU-seconds)")
		}
		switch b.Action {
		case BudgetWarn, BudgetCap, BudgetScaleToZero:
		default:
			add("budget.action", "must be warn, cap or scale-to-zero (got %q)", b.Action)
		}
	}
	if rl := f.RateLimit; rl != nil {
		if _, err := rl.PerSecond(); err != nil {
			add("rate_limit.rate", "%v", err)
		}
		if rl.Burst < 0 || (rl.Burst == 0 && given.RateLimit != nil && given.RateLimit.Burst != nil) {
			add("rate_limit.burst", "must be ≥ 1 (got %d; omit it for one second of rate)", rl.Burst)
		}
		if rl.MaxConcurrency < 0 {
			add("rate_limit.max_concurrency", "must be ≥ 0 (got %d)", rl.MaxConcurrency)
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Function: f.Name, Errs: errs}
	}
	return nil
}

// HardwareClass names the hardware an instance of f occupies, for metering
// and pricing: the GPU type when one is requested, else "cpu".
func (f *Function) HardwareClass() string {
	if f.Resources != nil && f.Resources.GPU != nil && f.Resources.GPU.Type != "" {
		return strings.ToLower(f.Resources.GPU.Type)
	}
	return "cpu"
}

// RateLimit is a token bucket plus a concurrency cap for one function.
type RateLimit struct {
	// Rate is "20/s", "600/m" or "1000/h".
	Rate  string `json:"rate,omitempty"`
	Burst int    `json:"burst,omitempty"`
	// MaxConcurrency caps calls in flight (0 = no cap beyond scaling).
	MaxConcurrency int `json:"max_concurrency,omitempty"`
}

// PerSecond parses Rate ("20/s", "600/m", "1000/h") into events per second.
func (r *RateLimit) PerSecond() (float64, error) {
	if r == nil || r.Rate == "" {
		return 0, nil
	}
	num, unit, ok := strings.Cut(r.Rate, "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	// !(v > 0) also refuses NaN; +Inf would limit nothing.
	if !ok || err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid rate %q (want e.g. \"20/s\", \"600/m\")", r.Rate)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		return v, nil
	case "m":
		return v / 60, nil
	case "h":
		return v / 3600, nil
	}
	return 0, fmt.Errorf("invalid rate %q: unit must be s, m or h", r.Rate)
}

// TextOptions configure the text tasks of the onnx runtime.
type TextOptions struct {
	// MaxLength lowers the model's truncation length, in tokens (0: the
	// model's, from tokenizer.json/config.json).
	MaxLength int `json:"max_length,omitempty"`
	// Pooling is mean or cls for embeddings (default: config.json's, else mean).
	Pooling string `json:"pooling,omitempty"`
	// Normalize scales embeddings to unit length (default true).
	Normalize *bool `json:"normalize,omitempty"`
	// Padding "longest" pads each batch to its longest text even where
	// tokenizer.json fixes the length (the attention mask makes the
	// answers the same, for less work); "" keeps tokenizer.json's.
	Padding string `json:"padding,omitempty"`
}

// Batch is the dynamic batcher's configuration.
type Batch struct {
	// MaxSize is the most texts one run holds.
	MaxSize int `json:"max_size"`
	// MaxDelay is how long an open batch waits for more requests
	// (default DefaultBatchMaxDelay).
	MaxDelay Duration `json:"max_delay,omitempty"`
}

// Limits of the text and batch fields.
const (
	MaxBatchSize         = 256
	MaxBatchDelay        = time.Second
	DefaultBatchMaxDelay = 5 * time.Millisecond
	MaxTextLength        = 8192
)

func validateText(f *Function, add func(field, format string, args ...any)) {
	if t := f.Text; t != nil {
		if t.MaxLength < 0 || t.MaxLength > MaxTextLength {
			add("text.max_length", "must be in [0, %d] tokens (got %d)", MaxTextLength, t.MaxLength)
		}
		if t.Padding != "" && t.Padding != "longest" {
			add("text.padding", "must be longest, or omitted for tokenizer.json's (got %q)", t.Padding)
		}
		if t.Pooling != "" && t.Pooling != "mean" && t.Pooling != "cls" {
			add("text.pooling", "must be mean or cls (got %q)", t.Pooling)
		}
	}
	b := f.Batch
	if b == nil {
		return
	}
	if b.MaxSize < 1 || b.MaxSize > MaxBatchSize {
		add("batch.max_size", "must be in [1, %d] (got %d)", MaxBatchSize, b.MaxSize)
	}
	if b.MaxDelay < 0 || b.MaxDelay.D() > MaxBatchDelay {
		add("batch.max_delay", "must be in [0, %s] (got %s)", MaxBatchDelay, b.MaxDelay.D())
	}
	if c := f.Scaling.Concurrency; c > 0 && c < b.MaxSize {
		add("scaling.concurrency", "%d is below batch.max_size %d: an instance never holds more than %d requests at once, so its batches could never fill and every batch would wait out max_delay; raise scaling.concurrency to at least %d (or omit it) or lower batch.max_size", c, b.MaxSize, c, b.MaxSize)
	}
}
