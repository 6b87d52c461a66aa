package replicate_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/jobs"
)

// TestGoClient drives the API with the Go client the CLI uses.
func TestGoClient(t *testing.T) {
	c := client.New(server(t, jobs.Options{}), "")
	ctx := context.Background()
	p, err := c.CreatePrediction(ctx, api.PredictionRequest{Model: "words", Input: json.RawMessage(`{"text":"x y"}`)},
		client.PredictionOptions{IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.WaitPrediction(ctx, p.ID, time.Minute)
	if err != nil || got.Status != api.PredictionSucceeded || string(got.Output) != `"x y "` {
		t.Fatalf("WaitPrediction = %s %s %v", got.Status, got.Output, err)
	}
	var events []string
	err = c.StreamPrediction(ctx, p.ID, "1", func(ev client.StreamEvent) error {
		events = append(events, ev.ID+" "+ev.Event+" "+ev.Data)
		return nil
	})
	if diff := cmp.Diff([]string{"2 output y ", "3 done {}"}, events); err != nil || diff != "" {
		t.Errorf("stream after 1 (%v) (-want +got):\n%s", err, diff)
	}
	blocked, err := c.CreatePrediction(ctx, api.PredictionRequest{Model: "block"}, client.PredictionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := c.CancelPrediction(ctx, blocked.ID); err != nil || cp.Status != api.PredictionCanceled {
		t.Errorf("cancel = %s, %v", cp.Status, err)
	}
	page, err := c.Predictions(ctx, "", 1)
	if err != nil || len(page.Results) != 1 || page.Results[0].ID != blocked.ID {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	page, err = c.Predictions(ctx, client.NextCursor(page), 1)
	if err != nil || len(page.Results) != 1 || page.Results[0].ID != p.ID {
		t.Errorf("second page = %+v, %v", page, err)
	}
	if s, err := c.WebhookSecret(ctx); err != nil || !strings.HasPrefix(s, "whsec_") {
		t.Errorf("secret = %q, %v", s, err)
	}
	if _, err := c.Prediction(ctx, "0000000000000000000000000a", 0); !client.IsNotFound(err) {
		t.Errorf("unknown prediction: %v", err)
	}
}
