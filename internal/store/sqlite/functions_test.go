package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestFunctionsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ember.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	fn, created, err := db.PutFunction(ctx, "sim", []byte(`{"name":"sim","runtime":"process"}`), now)
	if err != nil || !created || fn.Version != 1 {
		t.Fatalf("first put = %+v, %v, %v; want version 1, created", fn, created, err)
	}
	fn, created, err = db.PutFunction(ctx, "sim", []byte(`{"name":"sim","runtime":"process","retries":1}`), now.Add(time.Minute))
	if err != nil || created || fn.Version != 2 || !fn.CreatedAt.Equal(now) {
		t.Fatalf("second put = %+v, %v, %v; want version 2, not created, created_at kept", fn, created, err)
	}
	db.Close()

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fns, err := db.ListFunctions(ctx)
	if err != nil || len(fns) != 1 {
		t.Fatalf("list = %v, %v; want one function", fns, err)
	}
	if got, want := string(fns[0].Spec), `{"name":"sim","runtime":"process","retries":1}`; got != want {
		t.Errorf("spec = %s, want %s", got, want)
	}
	if got, want := fns[0].Runtime, "process"; got != want {
		t.Errorf("runtime = %q, want %q", got, want)
	}
	existed, err := db.DeleteFunction(ctx, "sim")
	if err != nil || !existed {
		t.Fatalf("delete = %v, %v", existed, err)
	}
	if existed, _ := db.DeleteFunction(ctx, "sim"); existed {
		t.Error("second delete reported existed")
	}
}
