package onnx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ember-run/ember/internal/driver"
)

// relabelProc's instances answer the worker protocol's /load and /phases
// (an httptest server) and record Relabel, like kube Pods.
type relabelProc struct {
	stubProc
	fail error // what Relabel returns

	mu     sync.Mutex
	labels []driver.Labels
}

type relabelInstance struct {
	*stubInstance
	p *relabelProc
}

func (r relabelInstance) Relabel(_ context.Context, l driver.Labels) error {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.p.labels = append(r.p.labels, l)
	return r.p.fail
}

func (p *relabelProc) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	in, err := p.stubProc.Start(ctx, s)
	return relabelInstance{stubInstance: in.(*stubInstance), p: p}, err
}

func (p *relabelProc) relabelled() []driver.Labels {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.labels)
}

func (p *relabelProc) started() []driver.StartSpec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.specs)
}

func workerStub(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/load":
			w.WriteHeader(http.StatusOK)
		case "/phases":
			io.WriteString(w, "[]")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// A pooled worker is started with the pool's labels and the driver's
// host, and a start that specialises it relabels it as the function's
// instance (a Pod a new leader then adopts rather than deletes). A
// Poolable hook that refuses the spec, or a failed relabel, gets the
// function a fresh worker of its own.
func TestSpecialiseRelabels(t *testing.T) {
	fn := driver.Labels{Function: "sentiment", Version: 3, Instance: "sentiment-ab12"}
	base := driver.StartSpec{Function: "sentiment", InstanceID: fn.Instance, Labels: fn, Task: "text-classification", Model: "/models/s"}
	tests := []struct {
		name      string
		poolable  func(driver.StartSpec) bool
		fail      error
		wantPool  bool // the start was served by the pooled worker
		relabels  int
		freshArgs bool // a fresh worker was started with the function's model
	}{
		{name: "specialised", wantPool: true, relabels: 1},
		{name: "refused by Poolable", poolable: func(driver.StartSpec) bool { return false }, freshArgs: true},
		{name: "relabel fails", fail: errors.New("forbidden"), relabels: 1, freshArgs: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &relabelProc{fail: tt.fail}
			p.addr = workerStub(t)
			d := New(p, slog.New(slog.DiscardHandler), Options{Executable: "/ember", Host: "0.0.0.0", PoolSize: 1, Poolable: tt.poolable})
			defer d.Close(context.Background())
			d.Warm()
			waitFor(t, "pool filled", func() bool { return d.PoolReady() == 1 })
			pool := p.started()[0]
			if want := (driver.Labels{Function: PoolFunction, Version: 1, Instance: pool.InstanceID}); pool.Labels != want {
				t.Errorf("pooled worker labels %+v, want %+v", pool.Labels, want)
			}
			if !strings.HasPrefix(pool.InstanceID, PoolFunction+"-"+d.token+"-") {
				t.Errorf("pooled worker id %q lacks the driver's token %s", pool.InstanceID, d.token)
			}
			if !slices.Contains(pool.Command, "--pool") || !hasPair(pool.Command, "--host", "0.0.0.0") || pool.Command[0] != "/ember" {
				t.Errorf("pooled worker argv %q: want /ember … --host 0.0.0.0 … --pool", pool.Command)
			}
			in, err := d.Start(context.Background(), base)
			if err != nil {
				t.Fatal(err)
			}
			var phases []string
			for _, ph := range in.Phases() {
				phases = append(phases, ph.Name)
			}
			if got := slices.Contains(phases, "pool_acquired"); got != tt.wantPool {
				t.Errorf("phases %q: pool_acquired %v, want %v", phases, got, tt.wantPool)
			}
			got := p.relabelled()
			if len(got) != tt.relabels || len(got) > 0 && got[0] != fn {
				t.Errorf("relabels %+v, want %d to %+v", got, tt.relabels, fn)
			}
			specs := p.started()
			fresh := len(specs) > 1 && hasPair(specs[1].Command, "--model-dir", "/models/s")
			if fresh != tt.freshArgs {
				t.Errorf("fresh worker started: %v, want %v (starts %d)", fresh, tt.freshArgs, len(specs))
			}
		})
	}
}

func hasPair(argv []string, k, v string) bool {
	i := slices.Index(argv, k)
	return i >= 0 && i+1 < len(argv) && argv[i+1] == v
}
