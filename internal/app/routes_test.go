package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cluster"
	"github.com/ember-run/ember/internal/config"
)

var update = flag.Bool("update", false, "rewrite testdata/routes.golden from the server's table")

// TestAuthorizationTable builds the server exactly as `ember serve` does
// and compares its authorization table, every route with its right, with
// testdata/routes.golden. A route added, removed or given another right
// fails here until the golden file (and docs/gateway.md's rights table)
// says so: go test ./internal/app -run TestAuthorizationTable -update.
func TestAuthorizationTable(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var routes []auth.Route
	err := serve(ctx, cfg, slog.New(slog.DiscardHandler), func(string) { cancel() }, func(r []auth.Route) { routes = r })
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	var b strings.Builder
	for _, r := range routes {
		// "fast": served by prefix, not the mux's tree walk; the inference
		// path must stay there (a new route under /v1/run/ knocks it off).
		fast := ""
		if r.Fast {
			fast = "  [fast]"
		}
		fmt.Fprintf(&b, "%-10s %s%s\n", r.Right, r.Pattern, fast)
	}
	// `ember controller` serves its own table: the probes and the
	// leader's protocol for gateways.
	ct := auth.NewTable(nil)
	tok, err := auth.NewClusterToken("a-cluster-token-0123456789abcdef0123")
	if err != nil {
		t.Fatal(err)
	}
	controllerRoutes(ct, cluster.NewLeader(cluster.LeaderOptions{}), tok, func() bool { return true }, http.NotFoundHandler())
	fmt.Fprintln(&b, "# ember controller")
	for _, r := range ct.Routes() {
		fmt.Fprintf(&b, "%-10s %s\n", r.Right, r.Pattern)
	}
	got := b.String()
	path := filepath.Join("testdata", "routes.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("authorization table differs from %s (rerun with -update once the change is meant, and update docs/gateway.md):\n--- got\n%s--- want\n%s", path, got, want)
	}
	t.Logf("%d routes, each with its right", len(routes))
}
