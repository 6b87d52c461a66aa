package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

const secretPrefix = "whsec_"

// webhookPoll is how often the deliverer looks for due webhooks besides
// being poked after a completion commits.
const webhookPoll = 200 * time.Millisecond

func newWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// SignWebhook returns the webhook-signature value ("v1,<base64 HMAC-SHA256>")
// of body for message id at ts under secret ("whsec_<base64 key>").
func SignWebhook(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil {
		return "", fmt.Errorf("webhook secret is not whsec_<base64>: %w", err)
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// ErrBadSignature: a webhook failed verification.
var ErrBadSignature = errors.New("webhook signature does not verify")

// VerifyWebhook checks a received webhook's Standard Webhooks headers
// against secret, rejecting timestamps more than tolerance away from now
// (replay protection).
func VerifyWebhook(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	id, tsText, sigs := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp), h.Get(HeaderWebhookSignature)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: missing webhook-id, webhook-timestamp or webhook-signature", ErrBadSignature)
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp %q", ErrBadSignature, tsText)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %s outside tolerance", ErrBadSignature, ts.UTC())
	}
	want, err := SignWebhook(secret, id, ts, body)
	if err != nil {
		return err
	}
	for _, sig := range strings.Fields(sigs) { // space-separated list, any may match
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}

// webhookFor builds the outbox entry announcing event with r's state.
func (s *Service) webhookFor(r *Record, event string, now time.Time) *Webhook {
	body, _ := json.Marshal(s.toPrediction(r))
	return &Webhook{JobID: r.ID, Event: event, URL: r.Webhook, Body: body, NextAt: now, CreatedAt: now}
}

func (s *Service) pokeWebhooks() {
	select {
	case s.hookPoke <- struct{}{}:
	default:
	}
}

// deliverWebhooks sends due outbox entries until ctx is done. One entry
// per job is in flight at a time (in order); a failing receiver only
// delays its own entries, which back off, so others keep flowing.
func (s *Service) deliverWebhooks(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.opts.WebhookWorkers)
	var mu sync.Mutex // guards busy
	busy := make(map[string]bool)
	for {
		t := s.clock.NewTimer(webhookPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-s.hookPoke:
			t.Stop()
		}
		due, err := s.store.DueWebhooks(ctx, s.clock.Now(), 4*s.opts.WebhookWorkers)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("jobs: read webhook outbox", "err", err)
			}
			continue
		}
		for _, w := range due {
			mu.Lock()
			skip := busy[w.JobID]
			busy[w.JobID] = true
			mu.Unlock()
			if skip {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() {
					<-sem
					mu.Lock()
					delete(busy, w.JobID)
					mu.Unlock()
					s.pokeWebhooks() // the job's next entry may be due
				}()
				s.deliver(ctx, w)
			})
		}
	}
}

// deliver POSTs one webhook and records the outcome.
func (s *Service) deliver(ctx context.Context, w *Webhook) {
	code, err := s.post(ctx, w)
	if ctx.Err() != nil {
		return // shutting down: delivered again at the next start
	}
	a := Attempt{At: s.clock.Now(), StatusCode: code}
	if err != nil {
		a.Error = truncate(err.Error(), maxAttemptError)
	}
	n := w.Attempts + 1
	var record func(Tx) error
	switch {
	case err == nil:
		record = func(tx Tx) error { return tx.WebhookDone(w.ID, n, api.DeliveryDelivered, a) }
	case n >= s.opts.WebhookMaxAttempts:
		s.log.Warn("jobs: webhook abandoned", "job", w.JobID, "event", w.Event, "url", w.URL, "attempts", n, "err", err)
		record = func(tx Tx) error { return tx.WebhookDone(w.ID, n, api.DeliveryAbandoned, a) }
	default:
		next := s.clock.Now().Add(backoff(s.opts.WebhookBackoff, s.opts.MaxWebhookBackoff, n))
		s.log.Debug("jobs: webhook failed, will retry", "job", w.JobID, "event", w.Event, "at", next, "err", err)
		record = func(tx Tx) error { return tx.WebhookRetry(w.ID, n, next, a) }
	}
	if err := s.write(ctx, record); err != nil && ctx.Err() == nil {
		s.log.Error("jobs: record webhook delivery", "job", w.JobID, "err", err)
	}
}

// maxAttemptError bounds the error text kept per delivery (a receiver's
// or resolver's message can be long).
const maxAttemptError = 512

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// post sends w once and returns the receiver's HTTP status (0 when none
// came) and why the attempt failed.
func (s *Service) post(ctx context.Context, w *Webhook) (int, error) {
	secret, err := s.WebhookSecret(ctx)
	if err != nil {
		return 0, err
	}
	id := "msg_" + w.JobID + "_" + strconv.FormatInt(w.ID, 10)
	now := s.clock.Now()
	sig, err := SignWebhook(secret, id, now, w.Body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ember-webhooks")
	req.Header.Set(HeaderWebhookID, id)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderWebhookSignature, sig)
	req.Header.Set("Ember-Webhook-Event", w.Event)
	resp, err := s.opts.WebhookClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered HTTP %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
