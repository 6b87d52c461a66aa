package metering

import (
	"fmt"
	"time"
)

// Instance states that metering splits an instance's life into.
const (
	// StateLoading runs from the start request until the instance is ready
	// (the cold start).
	StateLoading = "loading"
	// StateBusy is any time with at least one request in flight.
	StateBusy = "busy"
	// StateIdle is ready (kept warm) with nothing in flight, including the
	// time it takes to stop the instance.
	StateIdle = "idle"
)

// Rollup periods.
const (
	ByHour = "hour"
	ByDay  = "day"
)

// Seconds are instance-seconds by state.
type Seconds struct {
	Loading float64 `json:"loading"`
	Busy    float64 `json:"busy"`
	Idle    float64 `json:"idle"`
}

// Total is all three states.
func (s Seconds) Total() float64 { return s.Loading + s.Busy + s.Idle }

// Add returns s + o.
func (s Seconds) Add(o Seconds) Seconds {
	return Seconds{Loading: s.Loading + o.Loading, Busy: s.Busy + o.Busy, Idle: s.Idle + o.Idle}
}

// Bucket is the usage of one function on one hardware class over one
// period (an hour or a day, UTC). In the meter and on the way to the store a
// Bucket is a delta to add; from the store it is a rollup.
type Bucket struct {
	Function string `json:"function"`
	Hardware string `json:"hardware"`
	// Start is the first instant of the period (UTC, truncated to the hour
	// or the day).
	Start   time.Time `json:"start"`
	Seconds Seconds   `json:"seconds"`
	// GPUSeconds is instance-seconds (all states) times GPUs per instance.
	GPUSeconds float64 `json:"gpu_seconds"`
	// CostUSD is the instance-seconds priced at the hardware class's own
	// (hosted) rate when they were metered.
	CostUSD float64 `json:"cost_usd"`
	// Starts counts instances started; ColdStarts counts requests that
	// waited for an instance to start.
	Starts     int64 `json:"starts"`
	Requests   int64 `json:"requests"`
	Errors     int64 `json:"errors"`
	ColdStarts int64 `json:"cold_starts"`
	// DurationSeconds and QueueSeconds sum the requests' end-to-end and
	// queue-wait times; ServiceSeconds is the difference (time on an instance).
	DurationSeconds float64 `json:"duration_seconds"`
	QueueSeconds    float64 `json:"queue_seconds"`
	// AttributedUSD sums the requests' attributed costs (see Request.CostUSD).
	AttributedUSD float64 `json:"attributed_usd"`
	// BusyPeriods counts contiguous busy segments (per instance), for
	// offers that round each billed segment.
	BusyPeriods int64 `json:"busy_periods"`
}

// ServiceSeconds is the time requests spent on an instance.
func (b Bucket) ServiceSeconds() float64 { return b.DurationSeconds - b.QueueSeconds }

// add adds o's counters to b (not its identity).
func (b *Bucket) add(o Bucket) {
	b.Seconds = b.Seconds.Add(o.Seconds)
	b.GPUSeconds += o.GPUSeconds
	b.CostUSD += o.CostUSD
	b.Starts += o.Starts
	b.Requests += o.Requests
	b.Errors += o.Errors
	b.ColdStarts += o.ColdStarts
	b.DurationSeconds += o.DurationSeconds
	b.QueueSeconds += o.QueueSeconds
	b.AttributedUSD += o.AttributedUSD
	b.BusyPeriods += o.BusyPeriods
}

// Merge adds o's counters to b; identities must match (callers group first).
func (b *Bucket) Merge(o Bucket) { b.add(o) }

// Request is one invocation as metering records it.
type Request struct {
	Function string    `json:"function"`
	Hardware string    `json:"hardware"`
	At       time.Time `json:"at"` // when it ended
	Status   int       `json:"status"`
	Duration time.Duration
	Queue    time.Duration
	Cold     bool `json:"cold"`
	// CostUSD is the request's share of its function's busy instance-time:
	// its service time (duration minus queue) priced at the hardware rate,
	// scaled by the function's busy seconds over its requests' service
	// seconds. With concurrency 1 the ratio is about 1; with 4 requests
	// sharing one busy second each pays a quarter of it.
	CostUSD float64 `json:"cost_usd"`
}

// Query selects stored usage.
type Query struct {
	// Function, when set, selects one function.
	Function string
	// From and To bound the periods: [From, To). Zero means unbounded.
	From, To time.Time
	// By is ByHour or ByDay.
	By string
}

// Truncate returns the start of the period holding t (UTC).
func Truncate(t time.Time, by string) time.Time {
	t = t.UTC()
	if by == ByDay {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

// ParseBy validates a rollup period name ("" means hour).
func ParseBy(s string) (string, error) {
	switch s {
	case "", ByHour:
		return ByHour, nil
	case ByDay:
		return ByDay, nil
	}
	return "", fmt.Errorf("by: must be hour or day (got %q)", s)
}
