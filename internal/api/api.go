// Package api holds Ember's public wire types: JSON bodies, the error
// envelope and header names. It has no logic.
package api

import (
	"encoding/json"
	"time"
)

// Response headers set on invocations.
const (
	HeaderColdStart    = "Ember-Cold-Start"
	HeaderInstance     = "Ember-Instance"
	HeaderQueueMs      = "Ember-Queue-Ms"
	HeaderServerTiming = "Server-Timing"
	HeaderRoute        = "Ember-Route"
	HeaderCost         = "Ember-Cost-USD"
)

// Instance states.
const (
	StateStarting = "starting"
	StateReady    = "ready"
	StateStopping = "stopping"
	StateFailed   = "failed"
	// StateLoaded is a function's worker kept loaded after the function
	// scaled to zero (the onnx loaded pool); reported by the driver under
	// its own id, metered to the function as idle.
	StateLoaded = "loaded"
)

// Function states (FunctionStatus.State): what `ember ls` shows.
const (
	// FunctionReady: at least one instance of the current version serves.
	FunctionReady = "ready"
	// FunctionScaledToZero: nothing runs and nothing failed; the next
	// call starts an instance.
	FunctionScaledToZero = "scaled to zero"
	// FunctionStarting: instances are starting and none is ready yet.
	FunctionStarting = "starting"
	// FunctionFailing: the last start of the current version failed and
	// none of it is ready; further starts back off (LastError says why).
	FunctionFailing = "failing"
	// FunctionUpdating: instances of an older version still serve while
	// the new version starts.
	FunctionUpdating = "updating"
)

// Rollout states (Rollout.State).
const (
	RolloutProgressing = "progressing"
	RolloutComplete    = "complete"
	RolloutFailed      = "failed"
	// RolloutSuperseded: a newer version was deployed meanwhile.
	RolloutSuperseded = "superseded"
)

// Rollout is how far a function's current version is from ready
// (GET /v1/functions/{name}/rollout, what `ember deploy --wait` polls).
type Rollout struct {
	Function string `json:"function"`
	// Version is the version deployed now.
	Version int64  `json:"version"`
	State   string `json:"state"`
	// Want is how many ready instances of Version complete the rollout:
	// min now, and at least one.
	Want     int `json:"want"`
	Ready    int `json:"ready"`
	Starting int `json:"starting"`
	// Outdated counts instances of older versions still serving.
	Outdated int `json:"outdated"`
	// Error is why the last start of Version failed (state failed).
	Error string `json:"error,omitempty"`
	// LastLogs are that instance's last output lines.
	LastLogs []string `json:"last_logs,omitempty"`
}

// Error is the body of every non-2xx answer Ember itself produces.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong; Code is a stable machine-readable word.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Type is the OpenAI error class ("invalid_request_error", ...); it is
	// set where OpenAI clients read the answer and on auth failures.
	Type string `json:"type,omitempty"`
}

// Endpoint is one instance that can take requests, as a dispatcher sees it:
// where it listens and how loaded it is. A local process today; a remote
// one (a Pod's address) fits the same view.
type Endpoint struct {
	ID       string
	Addr     string
	InFlight int
	// Concurrency is the most requests it takes at once (0 = unlimited).
	Concurrency int
	ReadyAt     time.Time
}

// Instance is one instance of a function as GET /v1/functions/{name}/instances shows it.
type Instance struct {
	ID       string `json:"id"`
	Function string `json:"function"`
	// Version is the function spec version the instance runs; Outdated
	// marks one of an older version that serves until a new-version
	// instance is ready.
	Version   int64      `json:"version"`
	Outdated  bool       `json:"outdated,omitempty"`
	State     string     `json:"state"`
	Addr      string     `json:"addr,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	// Phases maps each start phase to milliseconds since the previous one
	// (spawned is measured from the start request).
	Phases map[string]float64 `json:"phases"`
	// PhaseOrder lists the keys of Phases in the order they happened.
	PhaseOrder []string `json:"phase_order"`
	InFlight   int      `json:"in_flight"`
	Served     int64    `json:"served"`
	// IdleSince is set while the instance is ready with nothing in flight;
	// ExpiresAt is when keep-warm ends if nothing arrives.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	ExitError string     `json:"exit_error,omitempty"`
	LastLogs  []string   `json:"last_logs,omitempty"`
}

// Function is a deployed function with its live status.
type Function struct {
	Spec      json.RawMessage `json:"spec"`
	Name      string          `json:"name"`
	Runtime   string          `json:"runtime"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	Version   int64           `json:"version"`
	Status    FunctionStatus  `json:"status"`
	// InputSchema is the JSON Schema of the function's input, where its
	// instances declare one (protocol cog: the image's /openapi.json
	// Input, known once an instance has been ready). Only on GET of one
	// function.
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// FunctionStatus is the live state of a function's pool.
type FunctionStatus struct {
	// State sums the pool up: one of the Function* states.
	State          string  `json:"state"`
	Ready          int     `json:"ready"`
	Starting       int     `json:"starting"`
	Failed         int     `json:"failed"`
	InFlight       int     `json:"in_flight"`
	Queued         int     `json:"queued"`
	Desired        int     `json:"desired"`
	MinNow         int     `json:"min_now"`
	Panic          bool    `json:"panic"`
	Reason         string  `json:"reason,omitempty"`
	LastError      string  `json:"last_error,omitempty"`
	ColdStarts     int64   `json:"cold_starts"`
	Requests       int64   `json:"requests"`
	ColdStartP50Ms float64 `json:"cold_start_p50_ms,omitempty"`
	// Budget is today's spend against the function's budget, if it has one.
	Budget *BudgetStatus `json:"budget,omitempty"`
	// KeepWarm is the learned keep-warm policy's state (idle_timeout: auto).
	KeepWarm *KeepWarm `json:"keep_warm,omitempty"`
}

// DeployResult answers a deploy.
type DeployResult struct {
	Function Function `json:"function"`
	Created  bool     `json:"created"`
}

// LogLine is one line of an instance's output.
type LogLine struct {
	Instance string `json:"instance"`
	Line     string `json:"line"`
}

// KeepWarm is what the learned keep-warm policy (scaling.idle_timeout: auto)
// chose for a function, and why.
type KeepWarm struct {
	// PreWarmS: after a busy period the function has no instance for this
	// many seconds, then one starts; KeepAliveS is how long it stays.
	PreWarmS   float64 `json:"pre_warm_s"`
	KeepAliveS float64 `json:"keep_alive_s"`
	Samples    int     `json:"samples"`
	HeadS      float64 `json:"head_s,omitempty"` // the pre-warm percentile of idle time
	TailS      float64 `json:"tail_s,omitempty"` // the keep-alive percentile of idle time
	CV         float64 `json:"cv"`
	// Fallback says why the fixed window applies ("" when learned).
	Fallback string `json:"fallback,omitempty"`
	Reason   string `json:"reason"`
	// Arrivals after an idle gap, those inside the predicted window, and
	// those that found an instance the policy kept (cold starts avoided).
	Arrivals  int64 `json:"arrivals"`
	Predicted int64 `json:"predicted"`
	Avoided   int64 `json:"avoided"`
}

// FunctionVersionsKept is how many versions of each function the deploy
// history keeps; each write prunes older ones.
const FunctionVersionsKept = 50

// FunctionVersion is one entry of a function's deploy history
// (GET /v1/functions/{name}/versions, newest first).
type FunctionVersion struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	// Spec is the spec as that version stored it.
	Spec       json.RawMessage `json:"spec"`
	DeployedAt time.Time       `json:"deployed_at"`
	// DeployedBy is the id of the API key that wrote it ("" when the
	// server ran without authentication or the write predates history).
	DeployedBy string `json:"deployed_by,omitempty"`
}
