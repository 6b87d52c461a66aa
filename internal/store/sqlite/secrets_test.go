package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/api"
)

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, created, err := db.PutSecret(ctx, "hf-token", []byte("v1"), t0); err != nil || !created {
		t.Fatalf("PutSecret = %v, created %v", err, created)
	}
	rec, created, err := db.PutSecret(ctx, "hf-token", []byte("v2\x00binary"), t0.Add(time.Minute))
	if err != nil || created {
		t.Fatalf("PutSecret again = %v, created %v", err, created)
	}
	if want := (api.Secret{Name: "hf-token", CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)}); !rec.CreatedAt.Equal(want.CreatedAt) || !rec.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("record = %+v, want %+v", rec, want)
	}
	v, ok, err := db.SecretValue(ctx, "hf-token")
	if err != nil || !ok || string(v) != "v2\x00binary" {
		t.Errorf("SecretValue = %q %v %v, want the latest value", v, ok, err)
	}
	if _, ok, err := db.SecretValue(ctx, "nope"); ok || err != nil {
		t.Errorf("SecretValue(nope) = %v %v, want not found", ok, err)
	}
	db.PutSecret(ctx, "a", []byte("x"), t0)
	list, err := db.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if d := cmp.Diff([]string{"a", "hf-token"}, names); d != "" {
		t.Errorf("ListSecrets names (-want +got):\n%s", d)
	}
	if existed, err := db.DeleteSecret(ctx, "hf-token"); err != nil || !existed {
		t.Errorf("DeleteSecret = %v %v", existed, err)
	}
	if existed, _ := db.DeleteSecret(ctx, "hf-token"); existed {
		t.Errorf("DeleteSecret twice: existed")
	}
	if _, ok, _ := db.SecretValue(ctx, "hf-token"); ok {
		t.Errorf("deleted secret still readable")
	}
}
