// Package cluster is the protocol between gateways and the leader
// controller when Ember runs as separate roles (`ember gateway`, `ember
// controller`): gateways report demand and instance activity every second
// and at once when a request waits for a function at zero; the leader
// answers with each function's ready endpoints and this gateway's share of
// each endpoint's concurrency (share.Target, made safe by share.Ledger), so
// no instance sees more than its concurrency in flight across gateways.
// JSON over cluster-internal HTTP under /internal/v1/, every body bounded.
package cluster

import (
	"time"

	"github.com/ember-run/ember/internal/api"
)

// Paths of the leader's routes.
const (
	PathReport    = "/internal/v1/report"
	PathEndpoints = "/internal/v1/endpoints"
	// PathInstances answers ?function=F with F's instances, or ?id=I with
	// one; PathLogs ?function=F&tail=N with F's last log lines. Gateways
	// serve their users' instance and log reads from these: the instances
	// run on the leader.
	PathInstances = "/internal/v1/instances"
	PathLogs      = "/internal/v1/logs"
	// MaxLogTail bounds PathLogs' tail.
	MaxLogTail = 10000
)

// Bounds of the protocol: a report or state larger than these is refused
// (413 / a decode error naming the limit) rather than read.
const (
	MaxBodyBytes    = 4 << 20
	MaxFunctions    = 10000 // per report
	MaxInstances    = 1000  // per function in a report
	MaxRoutes       = 10000 // per report
	MaxGatewayIDLen = 253
	// MaxPoll is the longest a GET /endpoints?after= waits for a change.
	MaxPoll = 30 * time.Second
)

// DefaultLive is how long a gateway counts as live after its last report.
const DefaultLive = 3 * time.Second

// Report is what a gateway sends the leader.
type Report struct {
	Gateway string `json:"gateway"`
	// Applied is the state version this gateway dispatches by now; the
	// leader frees older, larger shares once it is confirmed.
	Applied uint64 `json:"applied"`
	// Term is the term of the state Applied belongs to: versions count
	// within one leader's term only.
	Term      string                    `json:"term,omitempty"`
	Functions map[string]FunctionReport `json:"functions,omitempty"`
	// Prove asks the leader to start one instance of each function's
	// version if none of it runs (a deploy through this gateway that
	// waits for its rollout, at min 0).
	Prove map[string]int64 `json:"prove,omitempty"`
	// Routes counts calls per route since the previous report.
	Routes map[string]int64 `json:"routes,omitempty"`
}

// FunctionReport is one function's demand at one gateway.
type FunctionReport struct {
	InFlight int `json:"in_flight"`
	Queued   int `json:"queued"`
	// Average is the time-weighted concurrency (in flight + queued)
	// since the previous report.
	Average   float64                   `json:"average"`
	Instances map[string]InstanceReport `json:"instances,omitempty"`
}

// InstanceReport is this gateway's traffic on one instance.
type InstanceReport struct {
	InFlight int       `json:"in_flight"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// State is the leader's answer: what one gateway may dispatch to.
type State struct {
	// Term names the leader's term; a gateway takes any state of a new
	// term, whatever its Version (each leader counts from 1).
	Term      string                   `json:"term"`
	Version   uint64                   `json:"version"`
	Gateways  int                      `json:"gateways"` // live gateways, N
	Index     int                      `json:"index"`    // this gateway's index in [0, N)
	Functions map[string]FunctionState `json:"functions,omitempty"`
	// Routes counts calls per route at the other gateways that this
	// gateway has not been told yet (answers to reports only), so each
	// gateway's route windows hold the traffic of all of them.
	Routes map[string]int64 `json:"routes,omitempty"`
}

// FunctionState is one function's capacity.
type FunctionState struct {
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Live counts ready and starting instances; Failing (with RetryAt)
	// says why none may start now.
	Live    int       `json:"live"`
	Failing string    `json:"failing,omitempty"`
	RetryAt time.Time `json:"retry_at,omitzero"`
	// FailingStatus and FailingCode keep a kinded reason's HTTP status
	// and code (a budget at zero: 429 budget_exceeded), so a gateway
	// answers as `ember serve` would.
	FailingStatus int    `json:"failing_status,omitempty"`
	FailingCode   string `json:"failing_code,omitempty"`
	// Rollout is how far the current version is from ready (what a
	// deploy that waits watches).
	Rollout *api.Rollout `json:"rollout,omitempty"`
	// Budget is today's spend against the function's budget, as the
	// leader's metering has it (every instance runs there), so a gateway
	// shows the cluster's spend; nil without a budget.
	Budget *api.BudgetStatus `json:"budget,omitempty"`
}

// Endpoint is a ready instance and this gateway's share of it.
type Endpoint struct {
	ID      string    `json:"id"`
	Addr    string    `json:"addr"`
	ReadyAt time.Time `json:"ready_at"`
	// Concurrency is the instance's limit (0: unlimited, Share unused);
	// Share is what this gateway may have in flight on it (0: none now).
	Concurrency int `json:"concurrency"`
	Share       int `json:"share"`
}

// NotLeader is the body of a 503 from a controller that is not the leader.
type NotLeader struct {
	Error  string `json:"error"`
	Holder string `json:"holder,omitempty"`
}
