package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/jobs"
)

// pgPassword is in every DSN the servers get (trust auth ignores it) so
// the tests can check that no log shows it.
const pgPassword = "pw-must-not-leak"

// postgresDSN creates a database of the test's own on the server
// EMBER_TEST_POSTGRES names and returns its DSN, or skips.
func postgresDSN(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("EMBER_TEST_POSTGRES")
	if admin == "" {
		t.Skip("EMBER_TEST_POSTGRES is unset: start a throwaway server with scripts/postgres-test.sh (.ci/run does) and export the DSN it prints")
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("EMBER_TEST_POSTGRES: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "ember_e2e_" + hex.EncodeToString(b[:])
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("EMBER_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the servers stop (cleanups run last first)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, pgPassword, cfg.Host, cfg.Port, name)
}

// startPeer starts a second server on the same store with a data dir of
// its own, holding the first server's admin key (the key is in the shared
// database; only the CLI's copy of it lives in the data dir).
func startPeer(t *testing.T, first *server, env []string, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.key"), []byte(first.key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServerEnv(t, dir, env, extra...)
}

// TestPostgresStoreTwoServers: two `ember serve` on one PostgreSQL
// database (different ports and data dirs). A deploy on either is served
// by the other within 1 s (LISTEN/NOTIFY; --store-poll is 10 s so the
// fallback read cannot be what shows it), and the DSN's password shows in
// no log.
func TestPostgresStoreTwoServers(t *testing.T) {
	dsn := postgresDSN(t)
	env := []string{"EMBER_STORE=" + dsn}
	// A takes the flag, B the environment variable.
	a := startServer(t, "", "--store", dsn, "--store-poll", "10s")
	b := startPeer(t, a, env, "--store-poll", "10s")
	for _, s := range []*server{a, b} {
		if !strings.Contains(s.logs.String(), "store=postgres") {
			t.Fatalf("the server does not say it runs on postgres:\n%s", s.logs.String())
		}
	}
	steps := []struct {
		name     string
		from, to *server
		version  int64
		echo     string
	}{
		{"deploy on A, served by B", a, b, 1, "one"},
		{"redeploy on B, served by A", b, a, 2, "two"},
	}
	for _, st := range steps {
		fn := st.from.deploy(simSpec("pgecho", "{min: 0, max: 2}", "env: {TAG: "+st.echo+"}"))
		if fn.Version != st.version {
			t.Fatalf("%s: version %d, want %d", st.name, fn.Version, st.version)
		}
		deployed := time.Now()
		eventually(t, time.Second, st.name+": the other server has the version within 1s", func() bool {
			got, err := st.to.c.Function(context.Background(), "pgecho")
			return err == nil && got.Version == st.version
		})
		t.Logf("%s: seen after %v", st.name, time.Since(deployed).Round(time.Millisecond))
		r := st.to.call("POST", "/v1/run/pgecho/predict", `{"echo": "`+st.echo+`"}`)
		if r.status != 200 || !strings.Contains(string(r.body), st.echo) {
			t.Fatalf("%s: %d %s", st.name, r.status, r.body)
		}
	}
	// A removal travels too.
	if err := a.c.Delete(context.Background(), "pgecho"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "B forgets the removed function within 1s", func() bool {
		_, err := b.c.Function(context.Background(), "pgecho")
		return err != nil
	})
	for _, s := range []*server{a, b} {
		if strings.Contains(s.logs.String(), pgPassword) {
			t.Fatal("a server logged the database password")
		}
	}
}

// TestPostgresJobsAcrossServers: 40 jobs submitted on A, A SIGKILLed
// mid-run; B claims what A held once A's leases end, runs it and sends
// the webhook outbox. Every job ends, each with one distinct "completed"
// webhook id.
func TestPostgresJobsAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	var mu sync.Mutex
	completions := map[string]map[string]bool{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p api.Prediction
		if r.Header.Get("Ember-Webhook-Event") == "completed" && json.Unmarshal(body, &p) == nil {
			mu.Lock()
			if completions[p.ID] == nil {
				completions[p.ID] = map[string]bool{}
			}
			completions[p.ID][r.Header.Get(jobs.HeaderWebhookID)] = true
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	completed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(completions)
	}
	env := []string{"EMBER_STORE=" + postgresDSN(t)}
	a := startServerEnv(t, "", env, "--webhook-allow", "127.0.0.1/32")
	b := startPeer(t, a, env, "--webhook-allow", "127.0.0.1/32")
	a.deploy(simSpec("pgjobs", "{min: 0, max: 2, concurrency: 2}", "retries: 3"))
	eventually(t, time.Second, "B has the function", func() bool {
		_, err := b.c.Function(context.Background(), "pgjobs")
		return err == nil
	})
	const n = 40
	var ids []string
	for i := range n {
		p, err := a.c.CreatePrediction(context.Background(), api.PredictionRequest{
			Model: "pgjobs", Input: json.RawMessage(fmt.Sprintf(`{"echo": %d, "sleep_ms": 150}`, i)),
			Webhook: hook.URL, WebhookEventsFilter: []string{"completed"},
		}, client.PredictionOptions{})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids = append(ids, p.ID)
	}
	eventually(t, 60*time.Second, "a few jobs done on A", func() bool { return completed() >= 3 })
	a.cmd.Process.Kill()
	<-a.done
	t.Logf("A SIGKILLed after %d of %d completions", completed(), n)
	// A held its jobs under a 30 s lease: B takes them when it ends.
	terminal := map[string]string{}
	eventually(t, 120*time.Second, "every job terminal on B", func() bool {
		for _, id := range ids {
			if _, ok := terminal[id]; ok {
				continue
			}
			p, err := b.c.Prediction(context.Background(), id, 0)
			if err != nil {
				t.Fatalf("get %s on B: %v", id, err)
			}
			switch p.Status {
			case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
				terminal[id] = p.Status
			}
		}
		return len(terminal) == n
	})
	// A webhook A had taken from the outbox but not sent when it died is
	// held from the other nodes for 2 min (store/postgres webhookHold,
	// docs/kubernetes.md), then B sends it with the same id.
	eventually(t, 2*time.Minute+30*time.Second, "every completed webhook delivered", func() bool { return completed() == n })
	if !strings.Contains(b.logs.String(), "claimed jobs no worker held") {
		t.Fatalf("B ran none of A's jobs:\n%s", b.logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if terminal[id] != api.PredictionSucceeded {
			t.Errorf("%s: %s, want succeeded", id, terminal[id])
		}
		if len(completions[id]) != 1 {
			t.Errorf("%s: %d distinct completed webhook ids, want 1", id, len(completions[id]))
		}
	}
}

// TestStoreUnreachable: a server whose database does not answer stops at
// start with a message naming the server, not the password.
func TestStoreUnreachable(t *testing.T) {
	cmd := exec.Command(bins.ember, "serve", "--addr", freeAddr(t), "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "EMBER_STORE=postgres://ember:"+pgPassword+"@127.0.0.1:1/ember?connect_timeout=5")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started without its database:\n%s", out)
	}
	if !strings.Contains(string(out), "PostgreSQL at ember@127.0.0.1:1/ember is unreachable") || strings.Contains(string(out), pgPassword) {
		t.Fatalf("output:\n%s", out)
	}
}
