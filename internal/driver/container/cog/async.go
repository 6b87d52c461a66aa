package cog

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Async predictions use Cog's async API: POST /predictions with Prefer:
// respond-async and a webhook, which Cog calls with the whole prediction
// at start, at each output and log line, and at completion. The webhook
// is the adapter's callback listener, on an address the container
// reaches (loopback with host networking, the bridge's gateway address
// otherwise), at /cog-webhook/{prediction id}?token=…: the token is 256
// random bits for that one prediction, compared in constant time, and
// void once the prediction completed (or its caller left). The callback
// listener serves nothing else, so it has no row in Ember's route table:
// it is not part of Ember's API.

// maxPending bounds the async predictions in flight on one adapter (Cog
// runs one; a few more cover its 409s and stragglers).
const maxPending = 16

// callbacks is the adapter's webhook listener and its pending predictions.
type callbacks struct {
	ln     net.Listener
	srv    *http.Server
	served chan struct{}

	mu      sync.Mutex // guards the following
	pending map[string]*pendingPrediction
}

type pendingPrediction struct {
	token  []byte
	events chan []byte // each a Cog prediction object
}

// ListenCallbacks opens the webhook listener on host (an address the
// container can reach) and turns on async predictions: jobs and streaming
// calls then get Cog's output as it is produced. Call before Start.
func (a *Adapter) ListenCallbacks(host string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("cog webhook listener on %s: %w", host, err)
	}
	cb := &callbacks{ln: ln, served: make(chan struct{}), pending: map[string]*pendingPrediction{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cog-webhook/{id}", cb.receive)
	cb.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(cb.served)
		cb.srv.Serve(ln)
	}()
	a.callbacks = cb
	return nil
}

func (cb *callbacks) close() {
	cb.srv.Close()
	<-cb.served
}

// receive takes one webhook call from Cog.
func (cb *callbacks) receive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cb.mu.Lock()
	p, ok := cb.pending[id]
	cb.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(p.token, []byte(r.URL.Query().Get("token"))) != 1 {
		http.Error(w, "unknown prediction or token", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	if err != nil || len(body) > MaxResponseBytes {
		http.Error(w, "webhook body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	select {
	case p.events <- body:
		w.WriteHeader(http.StatusOK)
	case <-r.Context().Done():
	case <-time.After(30 * time.Second): // the caller stopped reading: Cog retries terminal events
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}
}

func (cb *callbacks) add() (id string, token string, p *pendingPrediction, err error) {
	var b [16]byte
	var t [32]byte
	rand.Read(b[:])
	rand.Read(t[:])
	id, token = hex.EncodeToString(b[:]), base64.RawURLEncoding.EncodeToString(t[:])
	p = &pendingPrediction{token: []byte(token), events: make(chan []byte, 64)}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(cb.pending) >= maxPending {
		return "", "", nil, errors.New("too many async predictions in flight on this instance")
	}
	cb.pending[id] = p
	return id, token, p, nil
}

func (cb *callbacks) remove(id string) {
	cb.mu.Lock()
	delete(cb.pending, id)
	cb.mu.Unlock()
}

// predictAsync runs one prediction through Cog's async API and streams it
// to w as SSE: output items as Cog yields them ("output" events), new log
// lines ("logs"), then "done", or "error" with Cog's error text. The
// caller leaving cancels the prediction on Cog.
func (a *Adapter) predictAsync(w http.ResponseWriter, r *http.Request, fields map[string]json.RawMessage) {
	cb := a.callbacks
	id, token, p, err := cb.add()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "instance_busy", err.Error(), "")
		return
	}
	defer cb.remove(id) // the token is single use: void once this returns
	hook := fmt.Sprintf("http://%s/cog-webhook/%s?token=%s", cb.ln.Addr(), id, token)
	body, _ := json.Marshal(map[string]any{"id": id, "input": fields, "webhook": hook,
		"webhook_events_filter": []string{"start", "output", "logs", "completed"}})
	resp, err := a.post(r.Context(), body, true)
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, http.StatusBadGateway, "upstream_unreachable", "cog server: "+err.Error(), "")
		}
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		a.respond(w, r, resp.StatusCode, raw)
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	sentItems, sentLogs := 0, 0
	for {
		var ev []byte
		select {
		case ev = <-p.events:
		case <-r.Context().Done():
			a.cancel(id)
			return
		}
		var pred prediction
		if json.Unmarshal(ev, &pred) != nil {
			continue
		}
		if len(pred.Logs) > sentLogs {
			for l := range strings.SplitSeq(strings.TrimRight(pred.Logs[sentLogs:], "\n"), "\n") {
				fmt.Fprintf(w, "event: logs\ndata: %s\n\n", l)
			}
			sentLogs = len(pred.Logs)
		}
		var items []json.RawMessage
		isList := json.Unmarshal(pred.Output, &items) == nil
		if isList {
			for _, it := range items[min(sentItems, len(items)):] {
				if it, err = linkFiles(a.files, it); err != nil {
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", err)
					return
				}
				fmt.Fprintf(w, "event: output\ndata: %s\n\n", bytes.ReplaceAll(it, []byte("\n"), []byte("\\n")))
			}
			sentItems = max(sentItems, len(items))
		}
		switch pred.Status {
		case "succeeded":
			if !isList && len(bytes.TrimSpace(pred.Output)) > 0 && string(pred.Output) != "null" {
				out, err := linkFiles(a.files, pred.Output)
				if err != nil {
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", err)
					return
				}
				fmt.Fprintf(w, "event: output\ndata: %s\n\n", bytes.ReplaceAll(out, []byte("\n"), []byte("\\n")))
			}
			if isList {
				// The whole list, so a job's output is Cog's list and not
				// the concatenation of its items.
				out, _ := linkFiles(a.files, pred.Output)
				fmt.Fprintf(w, "event: result\ndata: %s\n\n", out)
			}
			io.WriteString(w, "event: done\ndata: {}\n\n")
			rc.Flush()
			return
		case "failed", "canceled":
			msg := "prediction " + pred.Status
			var e string
			if json.Unmarshal(pred.Error, &e) == nil && e != "" {
				msg += ": " + e
			}
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", strings.ReplaceAll(msg, "\n", " "))
			rc.Flush()
			return
		}
		rc.Flush()
	}
}

// cancel asks Cog to cancel prediction id (the caller left).
func (a *Adapter) cancel(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.upstream+"/predictions/"+id+"/cancel", nil)
	if err != nil {
		return
	}
	if resp, err := a.client.Do(req); err == nil {
		resp.Body.Close()
	}
}
