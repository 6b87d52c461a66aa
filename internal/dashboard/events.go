package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/jobs"
)

// streamLife bounds one SSE stream; the browser's EventSource reconnects,
// which also re-checks the session's key at once.
const streamLife = 10 * time.Minute

// events is the page's one SSE stream: each message is a JSON object of
// fragment id → HTML, re-rendered after every sample (about once a
// second) or, on a job's page, after each of the job's events. Streams
// are bounded (MaxStreams); past the bound the answer is 503 and the page
// still shows its state as loaded.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	chunks := &jobChunks{}
	render, ok := d.renderer(r, v, q.Get("page"), q.Get("name"), q.Get("id"), chunks)
	if !ok {
		http.Error(w, "page: one of functions, function (with name), job (with id), routes", http.StatusBadRequest)
		return
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("too many live streams (at most %d)", cap(d.streams)), http.StatusServiceUnavailable)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // stops wakeup's goroutine
	end := time.NewTimer(streamLife)
	defer end.Stop()
	send := func() bool {
		// The key is re-checked before every message too (a map lookup in
		// the authenticator's cache): revoking it ends open streams.
		if v.ss != nil {
			if _, err := d.opts.Keys.Authenticate(ctx, "Bearer "+v.ss.key); err != nil {
				d.sessions.close(v.ss.id)
				return false
			}
		}
		frags, more := render()
		b, _ := json.Marshal(frags)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		fl.Flush()
		return more
	}
	wake := d.wakeup(ctx, v, q.Get("page"), q.Get("id"), chunks)
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case _, ok := <-wake:
			if !ok || !send() {
				return
			}
		}
	}
}

// frames shares a function page's rendered fragments among the streams
// open on it: rendered once per sample, however many dashboards watch.
// Access is checked when a stream opens, so the fragments are the same for
// every viewer.
type frames struct {
	mu  sync.Mutex // guards the following
	gen <-chan struct{}
	m   map[string]map[string]string
}

// get returns name's fragments for the sample generation gen (the
// recorder's Changed channel), rendering them if this generation has none.
func (f *frames) get(gen <-chan struct{}, name string, render func() map[string]string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen != gen {
		f.gen, f.m = gen, map[string]map[string]string{}
	}
	if out, ok := f.m[name]; ok {
		return out
	}
	out := render()
	f.m[name] = out
	return out
}

// maxChunks bounds the output chunks a job page's stream keeps.
const maxChunks = 1000

// jobChunks collects a running job's output events for its page: the
// record has the output only once the job is done.
type jobChunks struct {
	mu     sync.Mutex // guards chunks
	chunks []string
}

func (c *jobChunks) add(e jobs.Event) {
	if e.Type != "output" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.chunks) < maxChunks {
		chunk := string(e.Data)
		var text string // a chunk that is a JSON string shows as its text
		if json.Unmarshal(e.Data, &text) == nil {
			chunk = text
		}
		c.chunks = append(c.chunks, truncate(chunk, 4096))
	}
}

func (c *jobChunks) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.chunks, "\n")
}

// renderer returns the function that renders the page's live fragments
// (and whether more may follow).
func (d *Dashboard) renderer(r *http.Request, v viewer, page, name, id string, chunks *jobChunks) (func() (map[string]string, bool), bool) {
	switch page {
	case "functions":
		return func() (map[string]string, bool) {
			return map[string]string{"fns": string(d.functionsFragment(r, v))}, true
		}, true
	case "function":
		if _, ok := d.opts.Functions.Get(name); !ok || !v.may(name) {
			return nil, false
		}
		return func() (map[string]string, bool) {
			return d.frames.get(d.rec.Changed(), name, func() map[string]string {
				out := map[string]string{}
				for _, id := range []string{"status", "timeline", "rate", "starts", "logs"} {
					out[id] = string(d.functionFragment(id, name))
				}
				return out
			}), true
		}, true
	case "routes":
		return func() (map[string]string, bool) {
			return map[string]string{"routes": string(d.routesFragment(v))}, true
		}, true
	case "job":
		if d.opts.Jobs == nil {
			return nil, false
		}
		if _, err := d.opts.Jobs.Get(v.ctx(r.Context()), id); err != nil {
			return nil, false
		}
		return func() (map[string]string, bool) {
			p, err := d.opts.Jobs.Get(v.ctx(r.Context()), id)
			if err != nil {
				return map[string]string{}, false
			}
			done := p.Status == "succeeded" || p.Status == "failed" || p.Status == "canceled"
			if !done && (len(p.Output) == 0 || string(p.Output) == "null") {
				if t := chunks.text(); t != "" {
					p.Output = nil
					return map[string]string{"job": string(jobFragmentStreaming(p, t))}, true
				}
			}
			return map[string]string{"job": string(jobFragment(p))}, !done
		}, true
	}
	return nil, false
}

// wakeup delivers a tick whenever the page should be re-rendered: the
// recorder's samples, or a job's own events (collected into chunks). It
// closes when the source ends; its goroutine stops with ctx.
func (d *Dashboard) wakeup(ctx context.Context, v viewer, page, id string, chunks *jobChunks) <-chan struct{} {
	out := make(chan struct{}, 1)
	out <- struct{}{} // render once at once
	go func() {
		defer close(out)
		if page == "job" {
			st, err := d.opts.Jobs.Subscribe(v.ctx(ctx), id, 0)
			if err != nil {
				return
			}
			for {
				e, err := st.Next(ctx)
				if err != nil {
					// The stream ended (job done) or ctx is gone: one last render.
					select {
					case out <- struct{}{}:
					case <-ctx.Done():
					}
					return
				}
				chunks.add(e)
				select {
				case out <- struct{}{}:
				default: // a render is already due
				}
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.rec.Changed():
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
