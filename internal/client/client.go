// Package client is the Go client of Ember's HTTP API. The CLI and the
// end-to-end tests use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ember-run/ember/internal/api"
)

// Client talks to one Ember server.
type Client struct {
	BaseURL string
	HTTP    *http.Client
	// Key is sent as a bearer token when set.
	Key string
}

// New returns a client for baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL, key string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: http.DefaultClient, Key: key}
}

// Error is a non-2xx answer from the server.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// NewRequest builds a request to path with the client's auth. body may be
// nil, []byte, io.Reader, or a value encoded as JSON.
func (c *Client) NewRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var r io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		r, contentType = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, r)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	return req, nil
}

// Do sends req and returns an *Error for non-2xx answers (the body is
// consumed then).
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Ember at %s: %w", c.BaseURL, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return resp, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var env api.Error
	if json.Unmarshal(body, &env) == nil && env.Error.Message != "" {
		return &Error{Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message}
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Message: msg}
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Deploy creates or updates a function from a YAML or JSON spec.
func (c *Client) Deploy(ctx context.Context, spec []byte) (api.DeployResult, error) {
	var out api.DeployResult
	err := c.do(ctx, http.MethodPost, "/v1/functions", spec, &out)
	return out, err
}

// DeployWait deploys like Deploy and asks the server to start an instance
// of the new version even at min 0 (POST /v1/functions?wait=1), so that
// Rollout can tell whether it starts.
func (c *Client) DeployWait(ctx context.Context, spec []byte) (api.DeployResult, error) {
	var out api.DeployResult
	err := c.do(ctx, http.MethodPost, "/v1/functions?wait=1", spec, &out)
	return out, err
}

// Rollout is how far a function's current version is from ready.
func (c *Client) Rollout(ctx context.Context, name string) (api.Rollout, error) {
	var out api.Rollout
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+name+"/rollout", nil, &out)
	return out, err
}

// Functions lists deployed functions with their status.
func (c *Client) Functions(ctx context.Context) ([]api.Function, error) {
	var out []api.Function
	err := c.do(ctx, http.MethodGet, "/v1/functions", nil, &out)
	return out, err
}

// Function returns one function with its status.
func (c *Client) Function(ctx context.Context, name string) (api.Function, error) {
	var out api.Function
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+name, nil, &out)
	return out, err
}

// Versions returns a function's deploy history, newest first.
func (c *Client) Versions(ctx context.Context, name string) ([]api.FunctionVersion, error) {
	var out []api.FunctionVersion
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+name+"/versions", nil, &out)
	return out, err
}

// Delete removes a function.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/functions/"+name, nil, nil)
}

// Instances lists a function's instances.
func (c *Client) Instances(ctx context.Context, name string) ([]api.Instance, error) {
	var out []api.Instance
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+name+"/instances", nil, &out)
	return out, err
}

// Logs returns the last tail lines of a function's instance logs.
func (c *Client) Logs(ctx context.Context, name string, tail int) ([]api.LogLine, error) {
	var out []api.LogLine
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+name+"/logs?tail="+strconv.Itoa(tail), nil, &out)
	return out, err
}

// Run invokes a function: method and body go to path on an instance. The
// caller closes the response body. Non-2xx answers from Ember itself or the
// instance are returned as the response, not as an error, so callers see
// the instance's own body.
func (c *Client) Run(ctx context.Context, name, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	p := "/v1/run/" + name + path
	if u, err := url.Parse(p); err == nil {
		p = u.String()
	}
	req, err := c.NewRequest(ctx, method, p, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Ember at %s: %w", c.BaseURL, err)
	}
	return resp, nil
}

// ErrorFrom turns a non-2xx invocation response into an *Error.
func ErrorFrom(resp *http.Response) error { return decodeError(resp) }
