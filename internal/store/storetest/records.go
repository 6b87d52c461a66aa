package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
)

func testFunctions(t *testing.T, a, b Handle) {
	s := a.Records
	spec := []byte(`{"name":"echo","runtime":"process","z":1,  "a":[2]}`) // odd spacing and key order survive
	steps := []struct {
		name        string
		spec        []byte
		now         time.Time
		wantVersion int64
		wantCreated bool
	}{
		{"create", spec, t0, 1, true},
		{"replace", []byte(`{"runtime":"onnx"}`), t0.Add(time.Minute), 2, false},
		{"replace again", spec, t0.Add(2 * time.Minute), 3, false},
	}
	for _, st := range steps {
		fn, created, err := s.PutFunction(ctx(t), "echo", st.spec, st.now)
		must(t, err)
		if created != st.wantCreated || fn.Version != st.wantVersion || !fn.CreatedAt.Equal(t0) || !fn.UpdatedAt.Equal(st.now) {
			t.Fatalf("%s: created=%v version=%d created_at=%v updated_at=%v; want %v %d %v %v",
				st.name, created, fn.Version, fn.CreatedAt, fn.UpdatedAt, st.wantCreated, st.wantVersion, t0, st.now)
		}
	}
	_, _, err := s.PutFunction(ctx(t), "another", []byte(`{}`), t0)
	must(t, err)
	list, err := b.Records.ListFunctions(ctx(t)) // the other handle sees it
	must(t, err)
	if len(list) != 2 || list[0].Name != "another" || list[1].Name != "echo" {
		t.Fatalf("list = %+v, want another, echo", list)
	}
	got := list[1]
	if !bytes.Equal(got.Spec, spec) || got.Runtime != "process" || got.Version != 3 || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("read back %+v (spec %s)", got, got.Spec)
	}
	for _, want := range []bool{true, false} {
		existed, err := s.DeleteFunction(ctx(t), "echo")
		must(t, err)
		if existed != want {
			t.Fatalf("delete: existed=%v, want %v", existed, want)
		}
	}
	if list, _ := s.ListFunctions(ctx(t)); len(list) != 1 {
		t.Fatalf("after delete: %+v", list)
	}
}

// testFunctionVersions: every write of a function adds a version to its
// deploy history (spec, time, the key in ctx), kept to
// api.FunctionVersionsKept and gone with the function; routes add none.
func testFunctionVersions(t *testing.T, a, b Handle) {
	s := a.Records
	deployer := auth.NewContext(ctx(t), &auth.Principal{KeyID: "key-admin", Scope: auth.ScopeAdmin})
	_, _, err := s.PutFunction(ctx(t), "echo", []byte(`{"v":1}`), t0)
	must(t, err)
	_, _, err = s.PutFunction(deployer, "echo", []byte(`{"v":2}`), t0.Add(time.Minute))
	must(t, err)
	_, _, err = s.PutRoute(ctx(t), "echo-route", []byte(`{}`), t0)
	must(t, err)
	vs, err := b.Records.FunctionVersions(ctx(t), "echo", 100)
	must(t, err)
	if len(vs) != 2 || vs[0].Version != 2 || string(vs[0].Spec) != `{"v":2}` || !vs[0].DeployedAt.Equal(t0.Add(time.Minute)) ||
		vs[0].DeployedBy != "key-admin" || vs[1].Version != 1 || string(vs[1].Spec) != `{"v":1}` || vs[1].DeployedBy != "" ||
		vs[1].Name != "echo" {
		t.Fatalf("history = %+v", vs)
	}
	if vs, _ := b.Records.FunctionVersions(ctx(t), "echo-route", 100); len(vs) != 0 {
		t.Fatalf("a route has a function history: %+v", vs)
	}
	for i := 3; i <= api.FunctionVersionsKept+5; i++ {
		_, _, err := s.PutFunction(ctx(t), "echo", []byte(`{}`), t0.Add(time.Duration(i)*time.Minute))
		must(t, err)
	}
	vs, err = b.Records.FunctionVersions(ctx(t), "echo", 1000)
	must(t, err)
	if len(vs) != api.FunctionVersionsKept || vs[0].Version != api.FunctionVersionsKept+5 || vs[len(vs)-1].Version != 6 {
		t.Fatalf("pruned history: %d versions, %d..%d", len(vs), vs[0].Version, vs[len(vs)-1].Version)
	}
	if vs, _ := b.Records.FunctionVersions(ctx(t), "echo", 3); len(vs) != 3 {
		t.Fatalf("limit 3: %d versions", len(vs))
	}
	// Deleted and deployed again: the history starts over at version 1.
	_, err = s.DeleteFunction(ctx(t), "echo")
	must(t, err)
	_, _, err = s.PutFunction(ctx(t), "echo", []byte(`{"again":true}`), t0)
	must(t, err)
	vs, err = b.Records.FunctionVersions(ctx(t), "echo", 100)
	must(t, err)
	if len(vs) != 1 || vs[0].Version != 1 || string(vs[0].Spec) != `{"again":true}` {
		t.Fatalf("after delete and deploy: %+v", vs)
	}
}

func testRoutes(t *testing.T, a, b Handle) {
	s := a.Records
	r, created, err := s.PutRoute(ctx(t), "chat", []byte(`{"targets":[1]}`), t0)
	must(t, err)
	if !created || r.Version != 1 {
		t.Fatalf("create: %+v created=%v", r, created)
	}
	r, created, err = s.PutRoute(ctx(t), "chat", []byte(`{"targets":[2]}`), t0.Add(time.Second))
	must(t, err)
	if created || r.Version != 2 || !r.CreatedAt.Equal(t0) {
		t.Fatalf("replace: %+v created=%v", r, created)
	}
	got, err := b.Records.Route(ctx(t), "chat")
	must(t, err)
	if string(got.Spec) != `{"targets":[2]}` || got.Version != 2 || !got.UpdatedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("route = %+v", got)
	}
	if _, err := s.Route(ctx(t), "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown route: err = %v, want one naming it", err)
	}
	list, err := s.ListRoutes(ctx(t))
	must(t, err)
	if len(list) != 1 || list[0].Name != "chat" {
		t.Fatalf("list = %+v", list)
	}
	existed, err := s.DeleteRoute(ctx(t), "chat")
	must(t, err)
	if !existed {
		t.Fatal("delete: existed = false")
	}
}

func testSecrets(t *testing.T, a, b Handle) {
	s := a.Records
	val := []byte("s3cret\x00\xff") // binary survives
	rec, created, err := s.PutSecret(ctx(t), "HF_TOKEN", val, t0)
	must(t, err)
	if !created || !rec.CreatedAt.Equal(t0) {
		t.Fatalf("create: %+v %v", rec, created)
	}
	rec, created, err = s.PutSecret(ctx(t), "HF_TOKEN", []byte("v2"), t0.Add(time.Hour))
	must(t, err)
	if created || !rec.CreatedAt.Equal(t0) || !rec.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("replace: %+v %v", rec, created)
	}
	v, ok, err := b.Records.SecretValue(ctx(t), "HF_TOKEN")
	must(t, err)
	if !ok || string(v) != "v2" {
		t.Fatalf("value = %q %v", v, ok)
	}
	if _, ok, err := s.SecretValue(ctx(t), "missing"); err != nil || ok {
		t.Fatalf("missing: ok=%v err=%v", ok, err)
	}
	list, err := s.ListSecrets(ctx(t))
	must(t, err)
	if len(list) != 1 || list[0].Name != "HF_TOKEN" {
		t.Fatalf("list = %+v", list)
	}
	for _, want := range []bool{true, false} {
		existed, err := s.DeleteSecret(ctx(t), "HF_TOKEN")
		must(t, err)
		if existed != want {
			t.Fatalf("delete: existed=%v want %v", existed, want)
		}
	}
}

func testKeys(t *testing.T, a, b Handle) {
	s := a.Records
	keys := []auth.Key{
		{ID: "k1", Name: "admin", Hash: "h1", Scope: auth.ScopeAdmin, CreatedAt: t0},
		{ID: "k2", Name: "app", Hash: "h2", Scope: auth.ScopeInvoke, Functions: []string{"chat-*", "ocr"},
			RatePerSec: 2.5, Burst: 5, MaxConcurrency: 3, CreatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(24 * time.Hour)},
	}
	for _, k := range keys {
		must(t, s.CreateKey(ctx(t), k))
	}
	if err := s.CreateKey(ctx(t), keys[0]); err == nil {
		t.Fatal("a second key with the same id was stored")
	}
	got, err := b.Records.KeyByID(ctx(t), "k2")
	must(t, err)
	if got.Name != "app" || got.Scope != auth.ScopeInvoke || !slices.Equal(got.Functions, []string{"chat-*", "ocr"}) ||
		got.RatePerSec != 2.5 || got.Burst != 5 || got.MaxConcurrency != 3 || !got.ExpiresAt.Equal(keys[1].ExpiresAt) || !got.RevokedAt.IsZero() {
		t.Fatalf("key = %+v", got)
	}
	if _, err := s.KeyByID(ctx(t), "nope"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown key: %v, want auth.ErrNotFound", err)
	}
	must(t, s.RevokeKey(ctx(t), "k2", t0.Add(time.Hour)))
	must(t, s.RevokeKey(ctx(t), "k2", t0.Add(2*time.Hour))) // keeps the first time
	if err := s.RevokeKey(ctx(t), "nope", t0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	list, err := s.ListKeys(ctx(t))
	must(t, err)
	if len(list) != 2 || list[0].ID != "k1" || list[1].ID != "k2" || !list[1].RevokedAt.Equal(t0.Add(time.Hour)) || list[0].Functions != nil {
		t.Fatalf("list = %+v", list)
	}
}

func testKeepWarm(t *testing.T, a, b Handle) {
	s := a.Records
	must(t, s.SaveKeepWarm(ctx(t), "echo", []byte(`{"h":[1]}`), t0))
	must(t, s.SaveKeepWarm(ctx(t), "echo", []byte(`{"h":[2]}`), t0))
	must(t, s.SaveKeepWarm(ctx(t), "ocr", []byte(`{}`), t0))
	if err := s.SaveKeepWarm(ctx(t), "big", make([]byte, 1<<20), t0); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("1 MiB state: err = %v, want the bound named", err)
	}
	must(t, s.SaveKeepWarm(ctx(t), "ocr", nil, t0))
	got, err := b.Records.LoadKeepWarm(ctx(t))
	must(t, err)
	if len(got) != 1 || string(got["echo"]) != `{"h":[2]}` {
		t.Fatalf("loaded %q", got)
	}
}

func testChanges(t *testing.T, a, b Handle) {
	head, err := a.Records.ChangeHead(ctx(t))
	must(t, err)
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	ch, err := a.Watch(wctx, head)
	must(t, err)
	// Written through the other handle: another node.
	_, _, err = b.Records.PutFunction(ctx(t), "echo", []byte(`{}`), t0)
	must(t, err)
	_, _, err = b.Records.PutFunction(ctx(t), "echo", []byte(`{}`), t0)
	must(t, err)
	_, _, err = b.Records.PutRoute(ctx(t), "chat", []byte(`{}`), t0)
	must(t, err)
	must(t, b.Records.CreateKey(ctx(t), auth.Key{ID: "k1", Name: "n", Hash: "h", Scope: auth.ScopeInvoke, CreatedAt: t0}))
	must(t, b.Records.RevokeKey(ctx(t), "k1", t0))
	_, _, err = b.Records.PutSecret(ctx(t), "tok", []byte("v"), t0)
	must(t, err)
	_, err = b.Records.DeleteFunction(ctx(t), "echo")
	must(t, err)
	_, err = b.Records.DeleteFunction(ctx(t), "echo") // nothing deleted: nothing logged
	must(t, err)
	want := []api.Change{
		{Kind: api.ChangeFunction, Name: "echo", Version: 1},
		{Kind: api.ChangeFunction, Name: "echo", Version: 2},
		{Kind: api.ChangeRoute, Name: "chat", Version: 1},
		{Kind: api.ChangeKey, Name: "k1"},
		{Kind: api.ChangeKey, Name: "k1"},
		{Kind: api.ChangeSecret, Name: "tok"},
		{Kind: api.ChangeFunction, Name: "echo", Deleted: true},
	}
	last := head
	deadline := time.After(30 * time.Second)
	for i, w := range want {
		select {
		case c := <-ch:
			if c.Kind != w.Kind || c.Name != w.Name || c.Version != w.Version || c.Deleted != w.Deleted || c.Seq <= last {
				t.Fatalf("change %d = %+v, want %+v after seq %d", i, c, w, last)
			}
			last = c.Seq
		case <-deadline:
			t.Fatalf("change %d (%+v) not seen within 30s", i, w)
		}
	}
	h2, err := b.Records.ChangeHead(ctx(t))
	must(t, err)
	if h2 != last {
		t.Fatalf("head = %d, last seen %d", h2, last)
	}
	cancel()
	for range ch { // closed once ctx ends
	}
	if _, err := a.Watch(ctx(t), -1); err == nil {
		t.Fatal("Watch(-1) succeeded")
	}
}

// testEnsureKeyRace is the admin-key bootstrap of several replicas starting
// at once: each stores the same key unless present, through two handles.
func testEnsureKeyRace(t *testing.T, a, b Handle) {
	k := auth.Key{ID: "0123456789abcdef", Name: "admin (bootstrap)", Hash: "h1", Scope: auth.ScopeAdmin, CreatedAt: t0}
	head, err := a.Records.ChangeHead(ctx(t))
	must(t, err)
	const n = 16
	created := make(chan bool, n)
	errs := make(chan error, n)
	var start sync.WaitGroup
	start.Add(1)
	var done sync.WaitGroup
	for i := range n {
		s := a.Records
		if i%2 == 1 {
			s = b.Records
		}
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			c, err := s.EnsureKey(ctx(t), k)
			created <- c
			errs <- err
		}()
	}
	start.Done()
	done.Wait()
	close(created)
	close(errs)
	for err := range errs {
		must(t, err)
	}
	stored := 0
	for c := range created {
		if c {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("%d of %d concurrent EnsureKey calls stored the key, want exactly 1", stored, n)
	}
	// The same id with another hash changes nothing: the first one stays.
	c, err := b.Records.EnsureKey(ctx(t), auth.Key{ID: k.ID, Name: "x", Hash: "h2", Scope: auth.ScopeInvoke, CreatedAt: t0})
	must(t, err)
	if c {
		t.Fatal("EnsureKey replaced an existing key")
	}
	list, err := a.Records.ListKeys(ctx(t))
	must(t, err)
	if len(list) != 1 || list[0].Hash != "h1" || list[0].Scope != auth.ScopeAdmin {
		t.Fatalf("keys = %+v, want the one first stored", list)
	}
	after, err := a.Records.ChangeHead(ctx(t))
	must(t, err)
	if after-head != 1 {
		t.Fatalf("change log grew by %d, want 1 (only the call that stored the key announces it)", after-head)
	}
}
