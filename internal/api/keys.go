package api

import (
	"encoding/json"
	"time"
)

// Key scopes.
const (
	ScopeAdmin   = "admin"
	ScopeInvoke  = "invoke"
	ScopeMetrics = "metrics" // reads /metrics only
)

// Key is an API key as the server lists it. The secret is never listed.
type Key struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Scope string `json:"scope"`
	// Functions limits an invoke key to these functions or routes (path.Match
	// patterns such as "team-a/*"); empty means all.
	Functions []string `json:"functions,omitempty"`
	// RatePerSec and Burst are the key's token bucket (0 = unlimited).
	RatePerSec     float64    `json:"rate_per_sec,omitempty"`
	Burst          int        `json:"burst,omitempty"`
	MaxConcurrency int        `json:"max_concurrency,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

// KeyCreate is the body of POST /v1/keys.
type KeyCreate struct {
	Name      string   `json:"name"`
	Scope     string   `json:"scope"`
	Functions []string `json:"functions,omitempty"`
	// Rate is "N/s", "N/m" or "N/h" (a bare number is per second).
	Rate           string `json:"rate,omitempty"`
	Burst          int    `json:"burst,omitempty"`
	MaxConcurrency int    `json:"max_concurrency,omitempty"`
	// Expires is a lifetime such as "30d", "12h" or "90m"; empty is never.
	Expires string `json:"expires,omitempty"`
}

// KeyCreated answers POST /v1/keys: the only time the secret is shown.
type KeyCreated struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
}

// Route is a stored hybrid route with its live routing state.
type Route struct {
	Name      string          `json:"name"`
	Spec      json.RawMessage `json:"spec"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	Status    *RouteStatus    `json:"status,omitempty"`
}

// RouteStatus is a route's current choice and why.
type RouteStatus struct {
	// Choice is "persistent" or "serverless".
	Choice string    `json:"choice"`
	Reason string    `json:"reason"`
	QPS    float64   `json:"qps"`
	Since  time.Time `json:"since"`
}

// RouteApplyResult answers POST /v1/routes.
type RouteApplyResult struct {
	Route   Route `json:"route"`
	Created bool  `json:"created"`
}

// Route response headers.
const (
	// HeaderRouteFallback says the chosen target was down and the other
	// one answered, e.g. "persistent unavailable: dial tcp ...".
	HeaderRouteFallback = "Ember-Route-Fallback"
	// HeaderRouteReason is the reason code of the routing decision.
	HeaderRouteReason = "Ember-Route-Reason"
)
