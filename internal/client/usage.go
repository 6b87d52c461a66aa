package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ember-run/ember/internal/api"
)

// UsageQuery selects metered usage. Empty fields take the server's defaults
// (all functions, the last 24 hours, by hour). From and To take RFC 3339
// times, dates (2006-01-02) or durations before now ("24h").
type UsageQuery struct {
	Function string
	From, To string
	By       string // hour or day
}

// Usage returns metered usage and what it would have cost under each offer.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (api.UsageReport, error) {
	v := url.Values{}
	for k, s := range map[string]string{"function": q.Function, "from": q.From, "to": q.To, "by": q.By} {
		if s != "" {
			v.Set(k, s)
		}
	}
	path := "/v1/usage"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.UsageReport
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// UsageRequests returns the request records of q's window (q.By is
// ignored), newest first, at most limit (0: the server's default, 100).
func (c *Client) UsageRequests(ctx context.Context, q UsageQuery, limit int) (api.UsageRequests, error) {
	v := url.Values{}
	for k, s := range map[string]string{"function": q.Function, "from": q.From, "to": q.To} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/usage/requests"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.UsageRequests
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
