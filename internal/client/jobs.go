package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// PredictionOptions are the optional headers of a prediction create.
type PredictionOptions struct {
	// Wait holds the answer up to this long for the result (Prefer: wait=N;
	// whole seconds, at least 1).
	Wait time.Duration
	// CancelAfter aborts or cancels the prediction after this long.
	CancelAfter time.Duration
	// IdempotencyKey returns the original prediction for a repeat within 24 h.
	IdempotencyKey string
}

func (o PredictionOptions) apply(req *http.Request) {
	if o.Wait > 0 {
		req.Header.Set(api.HeaderPrefer, "wait="+strconv.Itoa(max(1, int(o.Wait.Round(time.Second)/time.Second))))
	}
	if o.CancelAfter > 0 {
		req.Header.Set(api.HeaderCancelAfter, o.CancelAfter.String())
	}
	if o.IdempotencyKey != "" {
		req.Header.Set(api.HeaderIdempotencyKey, o.IdempotencyKey)
	}
}

// doJSON sends a request with extra headers and decodes the JSON answer.
func (c *Client) doJSON(ctx context.Context, method, path string, body any, opts PredictionOptions, out any) error {
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	opts.apply(req)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// CreatePrediction submits an async prediction (`ember spawn`). The
// function is req.Model.
func (c *Client) CreatePrediction(ctx context.Context, req api.PredictionRequest, opts PredictionOptions) (api.Prediction, error) {
	var out api.Prediction
	err := c.doJSON(ctx, http.MethodPost, "/v1/predictions", req, opts, &out)
	return out, err
}

// CreateBatch submits one prediction per input of fn, committed together.
func (c *Client) CreateBatch(ctx context.Context, fn string, req api.BatchRequest, opts PredictionOptions) (api.BatchResponse, error) {
	var out api.BatchResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/functions/"+fn+"/batch", req, PredictionOptions{IdempotencyKey: opts.IdempotencyKey, CancelAfter: opts.CancelAfter}, &out)
	return out, err
}

// Prediction returns a prediction; with wait > 0 the server holds the
// answer up to wait for it to finish.
func (c *Client) Prediction(ctx context.Context, id string, wait time.Duration) (api.Prediction, error) {
	var out api.Prediction
	err := c.doJSON(ctx, http.MethodGet, "/v1/predictions/"+url.PathEscape(id), nil, PredictionOptions{Wait: wait}, &out)
	return out, err
}

// WaitPrediction polls (with server-side waits of up to a minute) until
// the prediction is terminal or timeout passes, and returns its last state
// (`ember get ID --wait 600s`).
func (c *Client) WaitPrediction(ctx context.Context, id string, timeout time.Duration) (api.Prediction, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		p, err := c.Prediction(ctx, id, min(max(left, time.Second), time.Minute))
		if err != nil || terminal(p.Status) || time.Now().After(deadline) {
			return p, err
		}
	}
}

func terminal(status string) bool {
	switch status {
	case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
		return true
	}
	return false
}

// CancelPrediction cancels a prediction and returns its state.
func (c *Client) CancelPrediction(ctx context.Context, id string) (api.Prediction, error) {
	var out api.Prediction
	err := c.do(ctx, http.MethodPost, "/v1/predictions/"+url.PathEscape(id)+"/cancel", nil, &out)
	return out, err
}

// Predictions lists predictions newest first; cursor is "" for the first
// page, then the cursor of the previous page's Next URL (NextCursor).
func (c *Client) Predictions(ctx context.Context, cursor string, limit int) (api.PredictionList, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.PredictionList
	err := c.do(ctx, http.MethodGet, "/v1/predictions?"+q.Encode(), nil, &out)
	return out, err
}

// NextCursor extracts the cursor of a page's next link ("" on the last page).
func NextCursor(l api.PredictionList) string {
	if l.Next == nil {
		return ""
	}
	u, err := url.Parse(*l.Next)
	if err != nil {
		return ""
	}
	return u.Query().Get("cursor")
}

// WebhookSecret returns the server's webhook signing secret.
func (c *Client) WebhookSecret(ctx context.Context) (string, error) {
	var out api.WebhookSecret
	err := c.do(ctx, http.MethodGet, "/v1/webhooks/default/secret", nil, &out)
	return out.Key, err
}

// StreamEvent is one Server-Sent Event of a prediction stream.
type StreamEvent struct {
	ID    string
	Event string // output, logs, error or done
	Data  string
}

// StreamPrediction reads a prediction's events (after lastEventID, "" for
// all) and calls f for each until done, f's error, or ctx ends.
func (c *Client) StreamPrediction(ctx context.Context, id, lastEventID string, f func(StreamEvent) error) error {
	req, err := c.NewRequest(ctx, http.MethodGet, "/v1/predictions/"+url.PathEscape(id)+"/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set(api.HeaderLastEventID, lastEventID)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var ev StreamEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" && data != nil {
			ev.Data = strings.Join(data, "\n")
			if err := f(ev); err != nil {
				return err
			}
			ev, data = StreamEvent{}, nil
		} else if field, value, ok := strings.Cut(line, ":"); ok {
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}
