package sqlite

import (
	"context"
	"testing"
	"time"
)

func TestKeepWarmState(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Unix(1700000000, 0)
	if err := db.SaveKeepWarm(ctx, "a", []byte(`{"v":1}`), now); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveKeepWarm(ctx, "a", []byte(`{"v":1,"oob":2}`), now); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveKeepWarm(ctx, "b", make([]byte, maxKeepWarmState+1), now); err == nil {
		t.Error("oversized state accepted")
	}
	m, err := db.LoadKeepWarm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || string(m["a"]) != `{"v":1,"oob":2}` {
		t.Errorf("loaded %q, want a's latest state only", m)
	}
	if err := db.SaveKeepWarm(ctx, "a", nil, now); err != nil {
		t.Fatal(err)
	}
	if m, _ := db.LoadKeepWarm(ctx); len(m) != 0 {
		t.Errorf("after delete: %q", m)
	}
}
