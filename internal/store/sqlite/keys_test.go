package sqlite

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/auth"
)

var keyT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func openTestDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	k1, _, err := auth.Generate(auth.NewKey{Name: "ci", Scope: auth.ScopeInvoke, Functions: []string{"echo", "team/*"},
		RatePerSec: 20, Burst: 40, MaxConcurrency: 3, TTL: 30 * 24 * time.Hour}, keyT0)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _ := auth.Generate(auth.NewKey{Name: "root", Scope: auth.ScopeAdmin}, keyT0.Add(time.Second))
	k3, _, _ := auth.Generate(auth.NewKey{Name: "prom", Scope: auth.ScopeMetrics}, keyT0.Add(2*time.Second))
	for _, k := range []auth.Key{k1, k2, k3} {
		if err := db.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateKey(ctx, k1); err == nil {
		t.Error("storing a duplicate id: want an error")
	}
	got, err := db.KeyByID(ctx, k1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(k1, got); d != "" {
		t.Errorf("KeyByID round trip (-want +got):\n%s", d)
	}
	if _, err := db.KeyByID(ctx, "0000000000000000"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("unknown id: %v, want auth.ErrNotFound", err)
	}
	list, err := db.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]auth.Key{k1, k2, k3}, list); d != "" {
		t.Errorf("ListKeys (-want +got):\n%s", d)
	}

	if err := db.RevokeKey(ctx, k1.ID, keyT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeKey(ctx, k1.ID, keyT0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = db.KeyByID(ctx, k1.ID)
	if want := keyT0.Add(time.Hour); !got.RevokedAt.Equal(want) {
		t.Errorf("revoked_at = %v, want the first revocation %v", got.RevokedAt, want)
	}
	if err := db.RevokeKey(ctx, "0000000000000000", keyT0); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("revoke unknown: %v, want auth.ErrNotFound", err)
	}
}

// TestAuthOverSQLite runs the auth middleware on the real store behind a
// real HTTP server: first-start admin key, an invoke key, revocation.
func TestAuthOverSQLite(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	dir := t.TempDir()
	path, created, err := auth.EnsureAdminKey(ctx, db, dir, keyT0)
	if err != nil || !created {
		t.Fatalf("EnsureAdminKey: %v, created=%v", err, created)
	}
	admin, err := auth.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	now := keyT0
	a := auth.New(db, auth.Options{Now: func() time.Time { return now }, CacheTTL: -1})
	_, invoke, err := a.Create(ctx, auth.NewKey{Name: "ci", Scope: auth.ScopeInvoke, Functions: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/run/{fn}", func(w http.ResponseWriter, r *http.Request) {
		if err := auth.AllowFunction(auth.FromContext(r.Context()), r.PathValue("fn")); err != nil {
			auth.WriteError(w, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.Handle("/v1/keys/", a.KeysHandler())
	srv := httptest.NewServer(a.Middleware(mux))
	defer srv.Close()

	do := func(method, path, key string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		name, method, path, key string
		want                    int
	}{
		{"no key", "POST", "/v1/run/echo", "", 401},
		{"invoke covered", "POST", "/v1/run/echo", invoke, 200},
		{"invoke not covered", "POST", "/v1/run/other", invoke, 403},
		{"admin from admin.key", "POST", "/v1/run/other", admin, 200},
		{"revoke ci", "DELETE", "/v1/keys/ci", admin, 204},
		{"revoked", "POST", "/v1/run/echo", invoke, 401},
	}
	for _, s := range steps {
		if got := do(s.method, s.path, s.key); got != s.want {
			t.Errorf("%s: %s %s = %d, want %d", s.name, s.method, s.path, got, s.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	spec := []byte(`{"name":"llm","targets":{"persistent":{"function":"a"},"serverless":{"function":"b"}}}`)
	r, created, err := db.PutRoute(ctx, "llm", spec, keyT0)
	if err != nil || !created || r.Version != 1 {
		t.Fatalf("first put: %+v, created=%v, %v", r, created, err)
	}
	r, created, err = db.PutRoute(ctx, "llm", spec, keyT0.Add(time.Minute))
	if err != nil || created || r.Version != 2 || !r.CreatedAt.Equal(keyT0) || !r.UpdatedAt.Equal(keyT0.Add(time.Minute)) {
		t.Fatalf("second put: %+v, created=%v, %v", r, created, err)
	}
	got, err := db.Route(ctx, "llm")
	if err != nil || string(got.Spec) != string(spec) {
		t.Errorf("Route = %+v, %v", got, err)
	}
	if _, err := db.Route(ctx, "nope"); !errors.Is(err, ErrRouteNotFound) {
		t.Errorf("unknown route: %v, want ErrRouteNotFound", err)
	}
	if _, _, err := db.PutRoute(ctx, "fast", spec, keyT0); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListRoutes(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "fast" {
		t.Errorf("ListRoutes = %+v, %v", list, err)
	}
	if ok, err := db.DeleteRoute(ctx, "llm"); !ok || err != nil {
		t.Errorf("delete: %v, %v", ok, err)
	}
	if ok, _ := db.DeleteRoute(ctx, "llm"); ok {
		t.Error("second delete reports the route existed")
	}
}
