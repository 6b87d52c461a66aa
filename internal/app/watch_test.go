package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/route"
	"github.com/ember-run/ember/internal/routing"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// noStarts is a driver for servers whose functions keep min 0 and get no
// calls: nothing may start.
type noStarts struct{}

func (noStarts) Start(context.Context, driver.StartSpec) (driver.Instance, error) {
	return nil, errors.New("no instance should start in this test")
}

type noObs struct{}

func (noObs) Request(string, int, time.Duration, time.Duration, bool) {}

// node is the part of a server that holds functions and routes in
// memory, built on its own handle of the store as Serve builds it.
type node struct {
	db     *sqlite.DB
	mgr    *instance.Manager
	ctl    *controller.Controller
	gw     *gateway.Gateway
	routes *routing.Service
}

func newNode(t *testing.T, path string) (*node, int64) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := instance.New(noStarts{}, logger, instance.Options{Logs: &instance.FileLogs{Dir: t.TempDir()}})
	t.Cleanup(func() { mgr.Shutdown(context.Background()) })
	demand := controller.NewDemandReports(0)
	ctl := controller.New(db, mgr, demand, logger, controller.Options{})
	act := activator.New(mgr, ctl)
	demand.Add(act)
	mgr.SetNotify(act.Notify)
	head, err := db.ChangeHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Load(ctx); err != nil {
		t.Fatal(err)
	}
	px := proxy.New()
	t.Cleanup(px.Close)
	routes, err := routing.New(ctx, routing.Options{Store: db, Secrets: db,
		IsFunction: func(name string) bool { _, ok := mgr.Function(name); return ok }, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(routes.Close)
	gw := gateway.New(gateway.Options{Invoker: act, Registry: registryView{ctl}, Instances: instancesView{mgr},
		Forwarder: px, Observer: noObs{}, Routes: routes, Secrets: db, Logger: logger})
	return &node{db: db, mgr: mgr, ctl: ctl, gw: gw, routes: routes}, head
}

// eventually polls cond until it holds, failing after a deadline far
// above the poll interval.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 10s (last: %s)", what, got)
		}
		time.Sleep(10 * time.Millisecond) // polling an outcome, not ordering events
	}
}

// TestStoreWatchShowsWritesOfAnotherHandle: two servers' worth of state
// on one database file, as two nodes sharing a store would be. What B
// deploys, updates, routes and removes, A's controller, instance manager
// and gateway apply through the store watch, within a few polls.
func TestStoreWatchShowsWritesOfAnotherHandle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	path := filepath.Join(t.TempDir(), "ember.db")
	a, head := newNode(t, path)
	b, _ := newNode(t, path)

	changes, err := a.db.Watch(ctx, head, sqlite.WatchOptions{Every: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fol := follower{functions: a.ctl.Sync, routes: a.routes.Sync, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- fol.follow(ctx, changes) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("follow: %v", err)
		}
	}()
	srvA := httptest.NewServer(a.gw)
	defer srvA.Close()

	deploy := func(doc string) {
		t.Helper()
		f, err := spec.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ctl.Deploy(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	// A deploy, then an update, through B.
	deploy(`{name: sim, command: [sh]}`)
	eventually(t, "B's deploy on A", func() (bool, string) {
		rec, _, ok := a.ctl.Get("sim")
		_, inMgr := a.mgr.Function("sim")
		return ok && rec.Version == 1 && inMgr, "registry " + jsonOf(rec) + ", manager " + jsonOf(inMgr)
	})
	deploy(`{name: sim, command: [sh], retries: 2}`)
	eventually(t, "B's update on A", func() (bool, string) {
		rec, _, _ := a.ctl.Get("sim")
		f, _ := a.mgr.Function("sim")
		return rec.Version == 2 && f != nil && f.Retries == 2, "registry " + jsonOf(rec) + ", manager " + jsonOf(f)
	})

	// A route applied through B is served by A's gateway.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend saw "+r.URL.Path)
	}))
	defer backend.Close()
	rt, err := route.Parse([]byte(`{"name": "chat", "targets": {"persistent": {"url": "` + backend.URL + `"}, "serverless": {"url": "` + backend.URL + `/spare"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rtJSON, err := json.Marshal(rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.db.PutRoute(ctx, "chat", rtJSON, time.Now()); err != nil {
		t.Fatal(err)
	}
	call := func() (int, string) {
		resp, err := http.Post(srvA.URL+"/v1/run/chat/v1/echo", "text/plain", nil)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	eventually(t, "B's route served by A", func() (bool, string) {
		code, body := call()
		return code == http.StatusOK && strings.HasPrefix(body, "backend saw ") && strings.HasSuffix(body, "/v1/echo"), body
	})

	// Removals through B leave A too.
	if err := b.ctl.Delete(ctx, "sim"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.DeleteRoute(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B's removals on A", func() (bool, string) {
		_, _, inReg := a.ctl.Get("sim")
		_, inMgr := a.mgr.Function("sim")
		code, body := call()
		return !inReg && !inMgr && code == http.StatusNotFound, body
	})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
