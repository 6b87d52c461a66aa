package api

import "time"

// UsageReport is the body of GET /v1/usage: metered usage per function and
// hardware class over [From, To), split into hour or day periods, with what
// the same traffic would have cost under each offer in the price catalogue.
type UsageReport struct {
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	By        string          `json:"by"`
	Functions []FunctionUsage `json:"functions"`
	// Total sums every function.
	Total UsageFigures `json:"total"`
	Notes []string     `json:"notes,omitempty"`
}

// UsageSeconds are instance-seconds by state.
type UsageSeconds struct {
	Loading float64 `json:"loading"`
	Busy    float64 `json:"busy"`
	Idle    float64 `json:"idle"`
}

// UsageFigures are the metered figures of one function (or all) over a span.
type UsageFigures struct {
	Seconds    UsageSeconds `json:"seconds"`
	GPUSeconds float64      `json:"gpu_seconds"`
	// Starts counts instance starts; ColdStarts counts requests that waited
	// for one, and ColdStartShare is ColdStarts / Requests.
	Starts         int64   `json:"starts"`
	Requests       int64   `json:"requests"`
	Errors         int64   `json:"errors"`
	ColdStarts     int64   `json:"cold_starts"`
	ColdStartShare float64 `json:"cold_start_share"`
	MeanDurationMs float64 `json:"mean_duration_ms"`
	MeanQueueMs    float64 `json:"mean_queue_ms"`
	// Utilization is busy seconds over all instance-seconds.
	Utilization float64 `json:"utilization"`
	// CostUSD prices the instance-seconds at the hardware class's own rate.
	CostUSD float64 `json:"cost_usd"`
}

// UsagePeriod is one hour or day of a function's usage.
type UsagePeriod struct {
	Start time.Time `json:"start"`
	UsageFigures
}

// FunctionUsage is one function on one hardware class.
type FunctionUsage struct {
	Function string `json:"function"`
	Hardware string `json:"hardware"`
	UsageFigures
	Periods []UsagePeriod `json:"periods"`
	// Alternatives price the same traffic under every offer in the catalogue
	// for this hardware: always-on fleets for the whole span, and hosted
	// per-second offers under their billing rules.
	Alternatives []UsageAlternative `json:"alternatives"`
	// Budget is today's spend against the function's budget, if it has one.
	Budget *BudgetStatus `json:"budget,omitempty"`
}

// UsageAlternative is one offer's price for the metered traffic.
type UsageAlternative struct {
	Name    string  `json:"name"`
	Offer   string  `json:"offer"`
	Kind    string  `json:"kind"`
	CostUSD float64 `json:"cost_usd"`
	// BilledSeconds are the unit-seconds the offer charges.
	BilledSeconds float64 `json:"billed_seconds"`
	// Units is the size of an always-on fleet in priced units.
	Units int    `json:"units,omitempty"`
	Note  string `json:"note,omitempty"`
}

// BudgetStatus is a function's spend today (UTC) against its daily budget.
type BudgetStatus struct {
	Day              time.Time `json:"day"`
	SpentUSD         float64   `json:"spent_usd"`
	GPUSeconds       float64   `json:"gpu_seconds"`
	USDPerDay        float64   `json:"usd_per_day,omitempty"`
	GPUSecondsPerDay float64   `json:"gpu_seconds_per_day,omitempty"`
	// Action is warn, cap or scale-to-zero; Over says it applies now.
	Action string `json:"action"`
	Over   bool   `json:"over"`
}

// UsageRequests is the body of GET /v1/usage/requests: the per-request
// records the server keeps (--request-records), newest first.
type UsageRequests struct {
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
	Requests []UsageRequest `json:"requests"`
	// More is set when the window holds more records than the limit let
	// through; ask again with an earlier to.
	More  bool     `json:"more"`
	Notes []string `json:"notes,omitempty"`
}

// UsageRequest is one invocation as metered.
type UsageRequest struct {
	Function string    `json:"function"`
	Hardware string    `json:"hardware"`
	At       time.Time `json:"at"` // when the response ended
	Status   int       `json:"status"`
	// DurationMs is arrival to the response's end; QueueMs the part spent
	// waiting for an instance (a cold start's included).
	DurationMs float64 `json:"duration_ms"`
	QueueMs    float64 `json:"queue_ms"`
	Cold       bool    `json:"cold"`
	// CostUSD is the request's attributed cost (docs/metering.md).
	CostUSD float64 `json:"cost_usd"`
}
