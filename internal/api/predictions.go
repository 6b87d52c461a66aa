package api

import (
	"encoding/json"
	"time"
)

// Prediction statuses. The first two are live; the rest are terminal.
const (
	PredictionStarting   = "starting"
	PredictionProcessing = "processing"
	PredictionSucceeded  = "succeeded"
	PredictionFailed     = "failed"
	PredictionCanceled   = "canceled"
	PredictionAborted    = "aborted"
)

// Request headers of the predictions API.
const (
	HeaderPrefer         = "Prefer"
	HeaderCancelAfter    = "Cancel-After"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderLastEventID    = "Last-Event-ID"
)

// Webhook event names accepted in webhook_events_filter.
const (
	WebhookStart     = "start"
	WebhookOutput    = "output"
	WebhookLogs      = "logs"
	WebhookCompleted = "completed"
)

// PredictionRequest is the body of POST /v1/predictions (Replicate-compatible).
type PredictionRequest struct {
	// Model names the function; Version is accepted as an alias.
	Model               string          `json:"model,omitempty"`
	Version             string          `json:"version,omitempty"`
	Input               json.RawMessage `json:"input,omitempty"`
	Webhook             string          `json:"webhook,omitempty"`
	WebhookEventsFilter []string        `json:"webhook_events_filter,omitempty"`
	// Stream is accepted for compatibility; urls.stream is always set.
	Stream bool `json:"stream,omitempty"`
}

// BatchRequest is the body of POST /v1/functions/{name}/batch: one
// prediction per input, all committed together.
type BatchRequest struct {
	Inputs              []json.RawMessage `json:"inputs"`
	Webhook             string            `json:"webhook,omitempty"`
	WebhookEventsFilter []string          `json:"webhook_events_filter,omitempty"`
}

// BatchResponse answers a batch submit, in input order.
type BatchResponse struct {
	Predictions []Prediction `json:"predictions"`
}

// Prediction is one job as the predictions API shows it.
type Prediction struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Version string          `json:"version"`
	Input   json.RawMessage `json:"input"`
	Output  json.RawMessage `json:"output"`
	// Error is null unless the prediction failed.
	Error       *string           `json:"error"`
	Logs        string            `json:"logs"`
	Status      string            `json:"status"`
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   *time.Time        `json:"started_at"`
	CompletedAt *time.Time        `json:"completed_at"`
	Metrics     PredictionMetrics `json:"metrics"`
	URLs        PredictionURLs    `json:"urls"`
	Webhook     string            `json:"webhook,omitempty"`
	// WebhookEventsFilter is the filter in force (all events when the
	// request named none).
	WebhookEventsFilter []string `json:"webhook_events_filter,omitempty"`
	// DataRemoved is true once retention has removed input and output.
	DataRemoved bool `json:"data_removed"`
	// Attempts counts the attempts started on an instance (Ember extension).
	Attempts int `json:"attempts"`
	// ExpiresAt is when retention removes the data (terminal predictions).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Omitted, in lists only, names the fields (input, output, logs) left
	// out for their size, with their size in bytes; GET urls.get has
	// them whole (Ember extension).
	Omitted map[string]int64 `json:"omitted,omitempty"`
	// WebhookDeliveries, in GET urls.get only, are the prediction's
	// webhooks with their outcome, oldest first (Ember extension).
	WebhookDeliveries []WebhookDelivery `json:"webhook_deliveries,omitempty"`
}

// PredictionMetrics are durations in seconds.
type PredictionMetrics struct {
	// PredictTime is the last attempt's time on the instance.
	PredictTime *float64 `json:"predict_time,omitempty"`
	// TotalTime is from creation to completion.
	TotalTime *float64 `json:"total_time,omitempty"`
	// QueueTime is from creation to the first start on an instance.
	QueueTime *float64 `json:"queue_time,omitempty"`
	// ColdStart is true when an attempt waited for a new instance.
	ColdStart bool `json:"cold_start"`
}

// PredictionURLs are absolute links to the prediction's endpoints.
type PredictionURLs struct {
	Get    string `json:"get"`
	Cancel string `json:"cancel"`
	Stream string `json:"stream"`
}

// PredictionList is one page of GET /v1/predictions, newest first.
type PredictionList struct {
	// Next is the URL of the following (older) page, null on the last.
	Next     *string      `json:"next"`
	Previous *string      `json:"previous"`
	Results  []Prediction `json:"results"`
}

// WebhookSecret answers GET /v1/webhooks/default/secret.
type WebhookSecret struct {
	Key string `json:"key"`
}

// Webhook delivery outcomes (WebhookDelivery.Outcome).
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryAbandoned = "abandoned"
)

// WebhookDelivery is one webhook of a prediction and what its attempts
// came to (GET /v1/predictions/{id}, Ember extension).
type WebhookDelivery struct {
	Event    string `json:"event"`
	URL      string `json:"url"`
	Outcome  string `json:"outcome"`
	Attempts int    `json:"attempts"`
	// StatusCode is the last attempt's HTTP status (0: no answer).
	StatusCode int `json:"status_code,omitempty"`
	// Error is why the last attempt failed.
	Error         string     `json:"error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	// NextAttemptAt is when a pending delivery is tried next.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}
