package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// TestKeysCommands runs `ember keys` against a real server: the auth key
// handler on the SQLite store.
func TestKeysCommands(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	path, _, err := auth.EnsureAdminKey(ctx, db, t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := auth.ReadKeyFile(path)
	a := auth.New(db, auth.Options{})
	mux := http.NewServeMux()
	mux.Handle("/v1/keys", a.KeysHandler())
	mux.Handle("/v1/keys/", a.KeysHandler())
	srv := httptest.NewServer(a.Middleware(mux))
	defer srv.Close()

	run := func(key string, args ...string) (string, error) {
		var out bytes.Buffer
		cmd := newKeysCmd(&globals{server: srv.URL, key: key})
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}

	out, err := run(admin, "create", "--name", "ci", "--scope", "invoke", "--functions", "echo, team/*", "--rate", "600/m", "--burst", "5", "--expires", "30d")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	secret := regexp.MustCompile(`ember_[0-9a-f]{16}_[A-Za-z0-9_-]{43}`).FindString(out)
	if secret == "" || !strings.Contains(out, "will not show it again") {
		t.Fatalf("create printed %q; want the key once with a warning", out)
	}
	if _, err := a.Authenticate(ctx, "Bearer "+secret); err != nil {
		t.Errorf("printed key does not authenticate: %v", err)
	}

	out, err = run(admin, "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"admin", "ci", "echo,team/*", "10/s", "active"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secret) {
		t.Error("ls printed a secret")
	}

	if _, err := run(secret, "ls"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("ls with an invoke key: %v, want a 403", err)
	}
	if _, err := run(admin, "create", "--name", "x", "--rate", "fast"); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Errorf("bad rate: %v, want an error naming rate", err)
	}
	if out, err := run(admin, "revoke", "ci"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if _, err := a.Authenticate(ctx, "Bearer "+secret); err != auth.ErrKeyRevoked {
		t.Errorf("after revoke: %v, want ErrKeyRevoked", err)
	}
}

func TestWriteRoutes(t *testing.T) {
	var b bytes.Buffer
	err := writeRoutes(&b, []api.Route{{
		Name:   "llm",
		Spec:   []byte(`{"name":"llm","targets":{"persistent":{"url":"http://vllm:8000"},"serverless":{"function":"llm-sl"}}}`),
		Status: &api.RouteStatus{Choice: "serverless", Reason: "below_threshold", QPS: 1.5},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http://vllm:8000", "function llm-sl", "qps>10 over 5m0s", "serverless", "1.50", "below_threshold"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("route table lacks %q:\n%s", want, b.String())
		}
	}
}
