package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAdminKeyFromSecret: two `ember serve` on one PostgreSQL database,
// both given the same --admin-key-file (a Kubernetes Secret's file, made
// by `ember keys generate`). Both start, the key is admin on both, the
// database holds it once, and neither writes admin.key nor warns about
// it. A world-readable key file and a short cluster token stop the server
// with a message naming the setting.
func TestAdminKeyFromSecret(t *testing.T) {
	dsn := postgresDSN(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	out, err := exec.Command(bins.ember, "keys", "generate").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, out, 0o400); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(out))
	token := strings.Repeat("c0ffee", 8) // 48 bytes
	env := []string{"EMBER_CLUSTER_TOKEN=" + token}
	a := startServerEnv(t, "", env, "--store", dsn, "--admin-key-file", keyFile)
	b := startServerEnv(t, "", append(env, "EMBER_ADMIN_KEY_FILE="+keyFile), "--store", dsn)
	for i, s := range []*server{a, b} {
		if _, err := os.Stat(filepath.Join(s.dataDir, "admin.key")); !os.IsNotExist(err) {
			t.Errorf("server %d wrote admin.key (stat: %v)", i, err)
		}
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(line, "admin.key") || strings.Contains(line, "level=WARN") && strings.Contains(line, "admin") {
				t.Errorf("server %d logged about admin.key: %s", i, line)
			}
		}
		if !strings.Contains(s.logs.String(), "admin API key from --admin-key-file") {
			t.Errorf("server %d does not say where its admin key came from", i)
		}
		// An admin-only route with the key from the file.
		if r := s.callAs(key, "GET", "/v1/keys", ""); r.status != 200 {
			t.Errorf("server %d: GET /v1/keys with the file's key = %d %s", i, r.status, r.body)
		}
		// The cluster token is no API key.
		if r := s.callAs(token, "GET", "/v1/functions", ""); r.status != 401 {
			t.Errorf("server %d: the cluster token as an API key = %d %s, want 401", i, r.status, r.body)
		}
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	var scope string
	if err := conn.QueryRow(t.Context(), `SELECT count(*), min(scope) FROM api_keys`).Scan(&n, &scope); err != nil {
		t.Fatal(err)
	}
	if n != 1 || scope != "admin" {
		t.Fatalf("api_keys holds %d rows (scope %s), want the one admin key", n, scope)
	}

	refused := func(name string, env []string, want string, args ...string) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bins.ember, append([]string{"serve", "--addr", freeAddr(t), "--data-dir", t.TempDir(), "--store", dsn}, args...)...)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), want) {
				t.Fatalf("err = %v, output:\n%s\nwant %q", err, out, want)
			}
		})
	}
	open := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(open, out, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(open, 0o644)
	refused("world-readable key file", nil, "admin-key-file "+open+": readable by every user (mode 0644)", "--admin-key-file", open)
	refused("short cluster token", []string{"EMBER_CLUSTER_TOKEN=short"}, "EMBER_CLUSTER_TOKEN: cluster token: 5 bytes, want at least 32")
}
