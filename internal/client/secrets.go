package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ember-run/ember/internal/api"
)

// PutSecret creates or replaces the secret name with value.
func (c *Client) PutSecret(ctx context.Context, name string, value []byte) (api.SecretPutResult, error) {
	var out api.SecretPutResult
	err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(name), value, &out)
	return out, err
}

// Secrets lists secrets: names and times, never values.
func (c *Client) Secrets(ctx context.Context) ([]api.Secret, error) {
	var out []api.Secret
	err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, &out)
	return out, err
}

// DeleteSecret removes a secret.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(name), nil, nil)
}
