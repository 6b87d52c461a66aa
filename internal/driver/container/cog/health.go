// Package cog speaks Cog's HTTP API (the server inside every image built by
// `cog build`) on Ember's behalf: readiness from GET /health-check, the
// input schema from GET /openapi.json, and an adapter that turns Ember's
// calls (a POST whose body is the input) into Cog's POST /predictions
// {"input": …} and Cog's answer {status, output, error, logs, metrics}
// back into Ember's result: the output as the body, or an error naming the
// field or carrying Cog's error text.
//
// The container driver uses it for functions with protocol: cog.
package cog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Protocol is the spec's protocol value for Cog servers (spec.ProtocolCog).
const Protocol = "cog"

// HealthPath is Cog's readiness endpoint.
const HealthPath = "/health-check"

// Health-check states a Cog server reports.
const (
	StatusStarting    = "STARTING"
	StatusReady       = "READY"
	StatusBusy        = "BUSY"
	StatusSetupFailed = "SETUP_FAILED"
	StatusDefunct     = "DEFUNCT"
	// StatusUnhealthy is reported by newer Cog versions when the
	// predictor's own healthcheck fails; it may recover, so Ember waits.
	StatusUnhealthy = "UNHEALTHY"
)

// maxHealthBytes bounds a health-check answer: it carries the setup logs,
// which a noisy setup() can make large; the tail is what matters.
const maxHealthBytes = 1 << 20

// healthAnswer is Cog's GET /health-check body.
type healthAnswer struct {
	Status string `json:"status"`
	Setup  *struct {
		Status string `json:"status"`
		Logs   string `json:"logs"`
	} `json:"setup"`
}

// SetupError is a Cog server that will never become ready: its setup()
// failed (SETUP_FAILED) or its worker died (DEFUNCT). Logs are the setup
// logs Cog reported.
type SetupError struct {
	Status string
	Logs   string
}

func (e *SetupError) Error() string {
	what := "setup failed"
	if e.Status == StatusDefunct {
		what = "server is defunct"
	}
	logs := lastLines(e.Logs, 20)
	if logs == "" {
		return "cog: " + what + " (" + e.Status + "; no setup logs)"
	}
	return "cog: " + what + " (" + e.Status + "); setup logs: " + logs
}

// lastLines is the last n non-empty lines of s, joined with " | " so a
// failure reason stays one line.
func lastLines(s string, n int) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// CheckHealth GETs url (a Cog server's /health-check) and reports whether
// it takes predictions: READY, and BUSY (ready, but running one). STARTING
// and anything unreadable are "not yet", with what was seen. SETUP_FAILED
// and DEFUNCT return a *SetupError: waiting longer cannot help.
func CheckHealth(ctx context.Context, c *http.Client, url string) (ready bool, seen string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error(), nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err.Error(), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxHealthBytes))
	var h healthAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &h) != nil {
		return false, fmt.Sprintf("%s, not a Cog health-check answer", resp.Status), nil
	}
	switch h.Status {
	case StatusReady, StatusBusy:
		return true, h.Status, nil
	case StatusSetupFailed, StatusDefunct:
		se := &SetupError{Status: h.Status}
		if h.Setup != nil {
			se.Logs = h.Setup.Logs
		}
		return false, h.Status, se
	}
	return false, "status " + h.Status, nil
}
