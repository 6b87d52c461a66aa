package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

// submitOnly accepts every submit and records it, and answers Wait at
// once: all that POST /v1/predictions calls.
type submitOnly struct {
	Jobs
	got []jobs.SubmitRequest
}

func (s *submitOnly) SubmitBatch(_ context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error) {
	s.got = append(s.got, reqs...)
	out := make([]*api.Prediction, len(reqs))
	for i, r := range reqs {
		out[i] = &api.Prediction{ID: "p", Model: r.Function, Status: "starting"}
	}
	return out, nil
}

func (s *submitOnly) Wait(_ context.Context, id string, _ time.Duration) (*api.Prediction, error) {
	return &api.Prediction{ID: id, Status: "succeeded"}, nil
}

// FuzzCreate sends arbitrary prediction bodies and Prefer headers (any key
// with invoke rights can): a submit reaches the job service only with a
// function named, and everything else is a Replicate-shaped 4xx, never a
// 500.
func FuzzCreate(f *testing.F) {
	f.Add([]byte(`{"version":"sim","input":{"text":"hi"}}`), "")
	f.Add([]byte(`{"model":"acme/words","input":{},"webhook":"https://example.com/h","webhook_events_filter":["completed"]}`), "")
	f.Add([]byte(`{"model":"m","input":null}`), "wait=5")
	f.Add([]byte(`{"model":"m","webhook":"http://169.254.169.254/"}`), "respond-async")
	f.Add([]byte(`{}`), "wait=abc")
	f.Fuzz(func(t *testing.T, body []byte, prefer string) {
		js := &submitOnly{}
		h := New(js, nil)
		r := httptest.NewRequest("POST", "/v1/predictions", bytes.NewReader(body))
		if prefer != "" {
			r.Header["Prefer"] = []string{prefer}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if len(js.got) > 0 {
			if js.got[0].Function == "" {
				t.Fatalf("submitted a job with no function for body %q", body)
			}
			return
		}
		var e struct {
			Detail string `json:"detail"`
			Status int    `json:"status"`
		}
		if w.Code < 400 || w.Code >= 500 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Detail == "" || e.Status != w.Code {
			t.Fatalf("answer %d %q: want a Replicate-shaped 4xx", w.Code, w.Body.String())
		}
	})
}
