package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ember-run/ember/internal/api"
)

// CreateKey creates an API key; the answer holds its secret, shown once.
func (c *Client) CreateKey(ctx context.Context, req api.KeyCreate) (api.KeyCreated, error) {
	var out api.KeyCreated
	err := c.do(ctx, http.MethodPost, "/v1/keys", req, &out)
	return out, err
}

// Keys lists API keys (never their secrets).
func (c *Client) Keys(ctx context.Context) ([]api.Key, error) {
	var out []api.Key
	err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out, err
}

// RevokeKey revokes the key with id ref, or the one active key named ref.
func (c *Client) RevokeKey(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(ref), nil, nil)
}

// ApplyRoute creates or updates a route from a YAML or JSON spec.
func (c *Client) ApplyRoute(ctx context.Context, spec []byte) (api.RouteApplyResult, error) {
	var out api.RouteApplyResult
	err := c.do(ctx, http.MethodPost, "/v1/routes", spec, &out)
	return out, err
}

// Routes lists routes with their current choice.
func (c *Client) Routes(ctx context.Context) ([]api.Route, error) {
	var out []api.Route
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &out)
	return out, err
}

// DeleteRoute removes a route.
func (c *Client) DeleteRoute(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/routes/"+name, nil, nil)
}
