package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"time"

	"github.com/ember-run/ember/internal/proxy"
)

// floor is the least a Go proxy in front of the instance can cost: net/http's
// server parsing the client's request, the body read into memory as the
// gateway does, and internal/proxy's lean forwarder, with nothing of Ember's
// around them (no keys, limits, routing, activator, metering or metrics).
// It runs in this process, as Ember does. So ember − floor is what Ember's
// features cost per call, and floor − nginx is what net/http and the Go
// runtime cost against nginx's event loop: the part of the gap that no change
// to Ember can close while net/http parses client requests.
type floor struct {
	url string
	srv *http.Server
	p   *proxy.Proxy
}

// startFloor serves POST /predict by forwarding to upstream (host:port).
func startFloor(upstream string) (*floor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &floor{url: "http://" + ln.Addr().String(), p: proxy.New()}
	f.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// As the gateway does: a body of known length is read into
			// a buffer of exactly that size.
			if r.ContentLength < 0 || r.ContentLength > 1<<20 {
				http.Error(w, "the floor takes bodies of known length up to 1 MiB", http.StatusRequestEntityTooLarge)
				return
			}
			body := make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			r.ContentLength = int64(len(body))
			if err := f.p.Forward(w, r, upstream, r.URL.Path); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
			}
		}),
	}
	// Labelled so that -cpuprofile can set its cost beside Ember's
	// (go tool pprof -tagfocus role=floor).
	go pprof.Do(context.Background(), pprof.Labels("role", "floor"), func(context.Context) {
		f.srv.Serve(ln) // returns when stop shuts the server down
	})
	return f, nil
}

func (f *floor) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		f.srv.Close()
	}
	f.p.Close()
}
