package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/spec"
)

// Job states in memory.
const (
	// stateQueued: waiting for a dispatch slot or a retry delay; no
	// goroutine owns the job, so a cancel finishes it directly.
	stateQueued = iota
	// stateRunning: a runner goroutine owns the job and records its end.
	stateRunning
	// stateFinishing: the terminal write is in progress.
	stateFinishing
	stateDone
)

var errTimeout = errors.New("function timeout")

// job is a non-terminal job in memory.
type job struct {
	id       string
	fn       string
	deadline time.Time
	ctx      context.Context // cancelled by cancel, Cancel-After or shutdown
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed once the terminal state is committed

	mu    sync.Mutex // guards the following
	state int
	// lost: done here because another worker took the lease.
	lost bool
	rec  Record
	// events are the stream events so far; changed is closed and replaced
	// whenever one is added or the job ends.
	events  []Event
	changed chan struct{}
	// chunks are the current attempt's streamed output chunks.
	chunks        []json.RawMessage
	chunkBytes    int64
	attemptAt     time.Time
	lastHook      time.Time
	retryTimer    Timer
	deadlineTimer Timer
}

func (s *Service) newJob(r *Record) *job {
	j := &job{
		id:       r.ID,
		fn:       r.Function,
		deadline: r.Deadline,
		done:     make(chan struct{}),
		state:    stateQueued,
		rec:      *r,
		changed:  make(chan struct{}),
	}
	j.ctx, j.cancel = context.WithCancelCause(s.runCtx)
	return j
}

func (j *job) stopTimers() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopTimersLocked()
}

// stopTimersLocked: j.mu must be held.
func (j *job) stopTimersLocked() {
	if j.retryTimer != nil {
		j.retryTimer.Stop()
	}
	if j.deadlineTimer != nil {
		j.deadlineTimer.Stop()
	}
}

// prediction renders the job's current state, with the output streamed so
// far while it runs.
func (j *job) prediction(s *Service) *api.Prediction {
	j.mu.Lock()
	r := j.snapshotLocked()
	j.mu.Unlock()
	return s.toPrediction(&r)
}

// snapshotLocked: j.mu must be held.
func (j *job) snapshotLocked() Record {
	r := j.rec
	if r.Output == nil && len(j.chunks) > 0 {
		r.Output = joinChunks(j.chunks)
	}
	return r
}

// addEventLocked appends an event and wakes subscribers: j.mu must be held.
func (j *job) addEventLocked(typ string, data json.RawMessage) {
	j.events = append(j.events, Event{ID: int64(len(j.events) + 1), Type: typ, Data: data})
	close(j.changed)
	j.changed = make(chan struct{})
}

// wants reports whether the job's webhook subscribes to event.
func (r *Record) wants(event string) bool {
	if r.Webhook == "" {
		return false
	}
	if len(r.WebhookEvents) == 0 {
		return true
	}
	for _, e := range r.WebhookEvents {
		if e == event {
			return true
		}
	}
	return false
}

// dispatchLimit bounds a function's dispatched jobs: every slot its
// instances can hold at max scale, plus half its queue (the other half is
// left to synchronous requests), so queued jobs are visible to the
// autoscaler as demand without starving sync callers of queue space.
// E.g. max=4, concurrency=2, queue=1000: 4*2 + 500 = 508.
func dispatchLimit(fn *spec.Function) int {
	return max(1, fn.Scaling.Max)*max(1, fn.Scaling.Concurrency) + fn.Scaling.Queue/2
}

// enqueue makes j runnable once a dispatch slot is free.
func (s *Service) enqueue(j *job, fn *spec.Function) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return // still starting/processing in the store: resumes at the next start
	}
	q := s.queues[j.fn]
	if q == nil {
		q = &fnQueue{}
		s.queues[j.fn] = q
	}
	q.limit = dispatchLimit(fn)
	q.pending = append(q.pending, j)
	s.dispatchLocked()
}

// dispatchLocked starts a runner for each pending job that fits the per
// function and global bounds. s.mu must be held.
func (s *Service) dispatchLocked() {
	for name, q := range s.queues {
		for !s.closing && len(q.pending) > 0 && q.inFlight < q.limit && s.inFlight < s.opts.MaxInFlight {
			j := q.pending[0]
			q.pending[0] = nil
			q.pending = q.pending[1:]
			j.mu.Lock()
			ok := j.state == stateQueued
			if ok {
				j.state = stateRunning
			}
			j.mu.Unlock()
			if !ok {
				continue // canceled while queued
			}
			q.inFlight++
			s.inFlight++
			s.runners.Go(func() { s.run(j) })
		}
		if len(q.pending) == 0 && q.inFlight == 0 {
			delete(s.queues, name)
		}
	}
}

func (s *Service) release(fn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[fn]; q != nil {
		q.inFlight--
	}
	s.inFlight--
	s.dispatchLocked()
}

// run owns j until it ends or waits for a retry.
func (s *Service) run(j *job) {
	defer s.release(j.fn)
	fn, err := s.fns.Function(j.ctx, j.fn)
	if err != nil {
		if j.ctx.Err() != nil {
			s.interrupted(j, false)
			return
		}
		s.finishRunner(j, api.PredictionFailed, nil, fmt.Sprintf("function %q: %v", j.fn, err))
		return
	}
	out, acquired, err := s.attempt(j, fn)
	switch {
	case err == nil:
		s.finishRunner(j, api.PredictionSucceeded, out, "")
		return
	case j.ctx.Err() != nil:
		s.interrupted(j, acquired)
		return
	case errors.Is(err, ErrQueueFull) && !acquired:
		// Nothing was sent: wait and try again without spending an attempt.
		s.retryAfter(j, fn, s.opts.RetryBackoff, "")
		return
	}
	j.mu.Lock()
	if !acquired {
		j.rec.Attempts++ // a failed start spends an attempt too
	}
	n := j.rec.Attempts
	j.mu.Unlock()
	if n > fn.Retries {
		s.finishRunner(j, api.PredictionFailed, nil, attemptMessage(err))
		return
	}
	d := backoff(s.opts.RetryBackoff, s.opts.MaxRetryBackoff, n)
	s.retryAfter(j, fn, d, fmt.Sprintf("ember: attempt %d of %d failed: %s; retrying in %s", n, fn.Retries+1, attemptMessage(err), d))
}

// retryAfter records the failed attempt (when logLine is set), frees the
// dispatch slot and re-queues j after d.
func (s *Service) retryAfter(j *job, fn *spec.Function, d time.Duration, logLine string) {
	j.mu.Lock()
	if logLine != "" {
		j.rec.Logs += logLine + "\n"
		data, _ := json.Marshal(logLine + "\n")
		j.addEventLocked("logs", data)
		snap := j.rec
		s.writeAsync(func(tx Tx) error { _, err := tx.Progress(&snap); return err })
	}
	j.state = stateQueued
	j.retryTimer = s.clock.AfterFunc(d, func() { s.enqueue(j, fn) })
	j.mu.Unlock()
}

// interrupted handles a runner whose job context ended: a cancel or a
// Cancel-After deadline ends the job; a shutdown leaves it to the next
// start, giving back the attempt it interrupted.
func (s *Service) interrupted(j *job, acquired bool) {
	cause := context.Cause(j.ctx)
	switch cause {
	case errLeaseLost:
		j.mu.Lock()
		j.state = stateFinishing
		j.mu.Unlock()
		s.abandon(j)
	case errShutdown:
		if acquired {
			j.mu.Lock()
			j.rec.Attempts--
			snap := j.rec
			j.mu.Unlock()
			_ = s.write(context.Background(), func(tx Tx) error { _, err := tx.Progress(&snap); return err })
		}
	case errDeadline:
		j.mu.Lock()
		started := !j.rec.StartedAt.IsZero()
		j.mu.Unlock()
		if started {
			s.finishRunner(j, api.PredictionCanceled, nil, cause.Error())
		} else {
			s.finishRunner(j, api.PredictionAborted, nil, cause.Error())
		}
	default:
		s.finishRunner(j, api.PredictionCanceled, nil, errUserCancel.Error())
	}
}

func (s *Service) finishRunner(j *job, status string, out json.RawMessage, msg string) {
	j.mu.Lock()
	j.state = stateFinishing
	j.mu.Unlock()
	s.finishAlone(j, status, out, msg)
}

// attemptError is a failed attempt's message as the prediction shows it.
type attemptError struct{ msg string }

func (e *attemptError) Error() string { return e.msg }

func attemptMessage(err error) string {
	var ae *attemptError
	if errors.As(err, &ae) {
		return ae.msg
	}
	return err.Error()
}

// attempt sends the job's input to an instance once.
func (s *Service) attempt(j *job, fn *spec.Function) (out json.RawMessage, acquired bool, err error) {
	ctx, cancel := context.WithCancelCause(j.ctx)
	defer cancel(nil)
	timeout := s.clock.AfterFunc(fn.Timeout.D(), func() { cancel(errTimeout) })
	defer timeout.Stop()
	j.mu.Lock()
	input := j.rec.Input
	attemptNo := j.rec.Attempts + 1
	j.mu.Unlock()
	path := fn.PredictPath
	if path == "" {
		path = spec.DefaultPredictPath
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(input))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Ember-Prediction-Id", j.id)
	req.Header.Set("Ember-Attempt", strconv.Itoa(attemptNo))
	err = s.inv.Invoke(ctx, fn.Name, req,
		func(cold bool) { acquired = true; s.started(j, cold) },
		func(resp *http.Response) error {
			var err error
			out, err = s.readResponse(j, resp)
			return err
		})
	if err != nil && j.ctx.Err() == nil && context.Cause(ctx) == errTimeout {
		err = &attemptError{msg: fmt.Sprintf("timed out after %s (function timeout)", fn.Timeout.D())}
	}
	return out, acquired, err
}

// started records that an attempt holds a slot on an instance. The write
// is not awaited: a crash before it commits costs at most one extra
// attempt, and it commits before the job's terminal write, which is sent
// later on the same writer.
func (s *Service) started(j *job, cold bool) {
	now := s.clock.Now()
	j.mu.Lock()
	j.rec.Attempts++
	j.rec.Status = api.PredictionProcessing
	first := j.rec.StartedAt.IsZero()
	if first {
		j.rec.StartedAt = now
	}
	j.rec.ColdStart = j.rec.ColdStart || cold
	j.attemptAt = now
	j.chunks, j.chunkBytes = nil, 0
	snap := j.rec
	j.mu.Unlock()
	var hook *Webhook
	if first && snap.wants(api.WebhookStart) {
		hook = s.webhookFor(&snap, api.WebhookStart, now)
	}
	s.writeAsync(func(tx Tx) error {
		if ok, err := tx.Progress(&snap); err != nil || !ok || hook == nil {
			return err
		}
		return tx.AddWebhook(hook)
	})
}

// readResponse turns an instance's answer into the attempt's output.
func (s *Service) readResponse(j *job, resp *http.Response) (json.RawMessage, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(body))
		// An answer in Ember's error envelope (a Cog function's failed
		// prediction, an instance behind another Ember) reads as its message.
		var env api.Error
		if json.Unmarshal(body, &env) == nil && env.Error.Message != "" {
			msg = env.Error.Message
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return nil, &attemptError{msg: fmt.Sprintf("function returned HTTP %d: %s", resp.StatusCode, msg)}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		return s.readStream(j, resp.Body)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxOutputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the function's response: %w", err)
	}
	if int64(len(body)) > s.opts.MaxOutputBytes {
		return nil, &attemptError{msg: fmt.Sprintf("output larger than %d bytes", s.opts.MaxOutputBytes)}
	}
	out := json.RawMessage(bytes.TrimSpace(body))
	if !json.Valid(out) {
		out, _ = json.Marshal(string(body)) // a non-JSON answer is a string output
	}
	j.mu.Lock()
	j.addEventLocked("output", out)
	j.mu.Unlock()
	return out, nil
}

// readStream reads a text/event-stream answer: default and "output"
// events are output chunks, "logs" events are log text, an "error" event
// fails the attempt, a "result" event is the whole output (instead of the
// chunks joined), "done" (or OpenAI's "data: [DONE]") ends it.
func (s *Service) readStream(j *job, body io.Reader) (json.RawMessage, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	var typ string
	var data []string
	var result json.RawMessage
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the function's stream: %w", err)
		}
		eof := err == io.EOF
		line = strings.TrimRight(line, "\r\n")
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				typ = value
			case "data":
				data = append(data, value)
			}
		}
		// A blank line (or the end) dispatches the event.
		if (line == "" || eof) && data != nil {
			text := strings.Join(data, "\n")
			switch {
			case (typ == "" || typ == "output") && strings.TrimSpace(text) == "[DONE]":
				eof = true // OpenAI-style end-of-stream sentinel, not output
			case typ == "" || typ == "output":
				if err := s.addChunk(j, chunk(text)); err != nil {
					return nil, err
				}
			case typ == "logs":
				s.addLogs(j, text)
			case typ == "error":
				return nil, &attemptError{msg: text}
			case typ == "result":
				// The whole output, sent after its chunks by an instance
				// whose output is a list (a Cog iterator): the job's output
				// is that list, not the concatenation of its items.
				if t := strings.TrimSpace(text); json.Valid([]byte(t)) {
					result = json.RawMessage(t)
				}
			case typ == "done":
				eof = true
			}
			typ, data = "", nil
		}
		if eof {
			break
		}
	}
	if result != nil {
		return result, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return joinChunks(j.chunks), nil
}

// chunk reads one data payload: a JSON object, array or string is taken
// as that value; anything else (including bare numbers, which would break
// concatenating token streams) is text.
func chunk(text string) json.RawMessage {
	t := strings.TrimSpace(text)
	if t != "" && strings.ContainsRune(`{["`, rune(t[0])) && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	b, _ := json.Marshal(text)
	return b
}

// joinChunks is the final output of a stream: the concatenation when every
// chunk is a string, else the list of chunks.
func joinChunks(chunks []json.RawMessage) json.RawMessage {
	allStrings := len(chunks) > 0
	for _, c := range chunks {
		if len(c) == 0 || c[0] != '"' {
			allStrings = false
			break
		}
	}
	if allStrings {
		var b strings.Builder
		for _, c := range chunks {
			var s string
			_ = json.Unmarshal(c, &s)
			b.WriteString(s)
		}
		out, _ := json.Marshal(b.String())
		return out
	}
	if len(chunks) == 0 {
		return json.RawMessage("[]")
	}
	out, _ := json.Marshal(chunks)
	return out
}

func (s *Service) addChunk(j *job, c json.RawMessage) error {
	j.mu.Lock()
	j.chunkBytes += int64(len(c))
	if j.chunkBytes > s.opts.MaxOutputBytes {
		j.mu.Unlock()
		return &attemptError{msg: fmt.Sprintf("output larger than %d bytes", s.opts.MaxOutputBytes)}
	}
	j.chunks = append(j.chunks, c)
	j.addEventLocked("output", c)
	hook := s.throttledHookLocked(j, api.WebhookOutput)
	j.mu.Unlock()
	s.sendHook(hook)
	return nil
}

func (s *Service) addLogs(j *job, text string) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	j.mu.Lock()
	j.rec.Logs += text
	data, _ := json.Marshal(text)
	j.addEventLocked("logs", data)
	hook := s.throttledHookLocked(j, api.WebhookLogs)
	j.mu.Unlock()
	s.sendHook(hook)
}

// throttledHookLocked returns an output/logs webhook unless one went out
// less than WebhookThrottle ago (the completed webhook carries everything
// anyway). j.mu must be held.
func (s *Service) throttledHookLocked(j *job, event string) *Webhook {
	if !j.rec.wants(event) {
		return nil
	}
	now := s.clock.Now()
	if now.Sub(j.lastHook) < s.opts.WebhookThrottle {
		return nil
	}
	j.lastHook = now
	snap := j.snapshotLocked()
	return s.webhookFor(&snap, event, now)
}

func (s *Service) sendHook(h *Webhook) {
	if h != nil {
		s.writeAsync(func(tx Tx) error { return tx.AddWebhook(h) })
	}
}

// finish commits j's terminal state (at most once: the store's conditional
// update decides) and then publishes it.
func (s *Service) finish(j *job, status string, output json.RawMessage, msg string) (bool, error) {
	now := s.clock.Now()
	j.mu.Lock()
	fin := j.snapshotLocked()
	fin.Status = status
	fin.CompletedAt = now
	fin.Output = output
	if !j.attemptAt.IsZero() {
		fin.PredictTime = now.Sub(j.attemptAt)
	}
	events := append([]Event(nil), j.events...)
	addEvent := func(typ string, data any) {
		b, _ := json.Marshal(data)
		events = append(events, Event{ID: int64(len(events) + 1), Type: typ, Data: b})
	}
	switch status {
	case api.PredictionFailed, api.PredictionAborted:
		fin.Error = msg
		addEvent("error", msg)
		reason := "error"
		if status == api.PredictionAborted {
			reason = "aborted"
		}
		addEvent("done", map[string]string{"reason": reason})
	case api.PredictionCanceled:
		fin.Logs += "ember: " + msg + "\n"
		addEvent("done", map[string]string{"reason": "canceled"})
	default:
		addEvent("done", struct{}{})
	}
	fin.Events, _ = json.Marshal(events)
	var hook *Webhook
	if fin.wants(api.WebhookCompleted) {
		hook = s.webhookFor(&fin, api.WebhookCompleted, now)
	}
	j.mu.Unlock()

	var applied bool
	err := s.writeRetry(func(tx Tx) error {
		var err error
		if applied, err = tx.Finish(&fin); err != nil || !applied || hook == nil {
			return err
		}
		return tx.AddWebhook(hook)
	})
	if err != nil {
		return false, err
	}
	if !applied {
		// Already terminal in the record: publish what the record says.
		// Not terminal: another worker took the lease and runs it.
		if r, err := s.store.Get(context.Background(), j.id); err == nil {
			if !isTerminal(r.Status) {
				s.abandon(j)
				return false, nil
			}
			fin = *r
			_ = json.Unmarshal(r.Events, &events)
		}
	}
	s.retire(j, nil, func() { j.rec, j.events, j.chunks = fin, events, nil })
	if hook != nil {
		s.pokeWebhooks()
	}
	return applied, nil
}
