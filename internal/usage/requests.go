package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/problem"
)

// RequestSource reads request records (metering.Meter).
type RequestSource interface {
	Requests(ctx context.Context, fns []string, from, to time.Time, limit int, now time.Time) ([]metering.Request, error)
}

// Bounds of GET /v1/usage/requests' limit.
const (
	DefaultRequestLimit = 100
	MaxRequestLimit     = 1000
)

// RequestsHandler serves GET /v1/usage/requests.
type RequestsHandler struct {
	src RequestSource
	now func() time.Time
}

// NewRequestsHandler returns the handler on src.
func NewRequestsHandler(src RequestSource) *RequestsHandler {
	return &RequestsHandler{src: src, now: time.Now}
}

// ServeHTTP answers GET /v1/usage/requests?function=&from=&to=&limit=:
// from and to as for GET /v1/usage (default the last 24 hours), limit
// 1–1000 (default 100).
func (h *RequestsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	out, err := h.requests(r, now)
	if err != nil {
		problem.WriteEmber(w, problem.Classify(err, now))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (h *RequestsHandler) requests(r *http.Request, now time.Time) (*api.UsageRequests, error) {
	q := r.URL.Query()
	from, to, err := window(q, now)
	if err != nil {
		return nil, err
	}
	limit := DefaultRequestLimit
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxRequestLimit {
			return nil, badRequest(fmt.Sprintf("limit: want 1–%d, got %q", MaxRequestLimit, s), nil)
		}
	}
	fn, p, err := function(r, q)
	if err != nil {
		return nil, err
	}
	// A key limited to some functions and asking for all reads each of
	// them, so no other function's record is ever read for it. Its list
	// may hold patterns (team-*), which the stores cannot select by: such
	// a key names the function it wants.
	fns := []string{fn}
	if fn == "" && p != nil && p.Scope != auth.ScopeAdmin && len(p.Functions) > 0 {
		for _, pat := range p.Functions {
			if strings.ContainsAny(pat, `*?[\`) {
				return nil, badRequest(fmt.Sprintf("function: required, because API key %q covers functions by pattern (%s)", p.Name, pat), nil)
			}
		}
		fns = slices.Compact(slices.Sorted(slices.Values(p.Functions)))
	}
	out := &api.UsageRequests{From: from.UTC(), To: to.UTC(), Requests: []api.UsageRequest{}}
	// One more than the limit tells whether there are more.
	recs, err := h.src.Requests(r.Context(), fns, from, to, limit+1, now)
	if errors.Is(err, metering.ErrNoRequestRecords) {
		out.Notes = append(out.Notes, "this server keeps no request records (--request-records 0); GET /v1/usage has the hourly and daily totals")
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if len(fns) > 1 {
		slices.SortStableFunc(recs, func(a, b metering.Request) int { return b.At.Compare(a.At) })
	}
	if len(recs) > limit {
		recs, out.More = recs[:limit], true
	}
	for _, rec := range recs {
		out.Requests = append(out.Requests, api.UsageRequest{
			Function: rec.Function, Hardware: rec.Hardware, At: rec.At.UTC(), Status: rec.Status,
			DurationMs: float64(rec.Duration) / 1e6, QueueMs: float64(rec.Queue) / 1e6,
			Cold: rec.Cold, CostUSD: rec.CostUSD,
		})
	}
	return out, nil
}
