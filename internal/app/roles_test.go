package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cluster"
	"github.com/ember-run/ember/internal/store/sqlite"

	"github.com/ember-run/ember/internal/config"
)

// The roles refuse to start without a cluster credential or with one too
// short to be a secret (auth's tests cover the token's own rules and the
// guard's both directions).
func TestClusterTokenRequired(t *testing.T) {
	tests := []struct {
		name, token, want string
	}{
		{"none", "", "set EMBER_CLUSTER_TOKEN or --cluster-token-file"},
		{"short", "short", "EMBER_CLUSTER_TOKEN"},
		{"good", "0123456789abcdef0123456789abcdef-cluster", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.ClusterToken = tt.token
			tok, err := requireClusterToken(cfg)
			if tt.want == "" {
				if err != nil || tok == nil {
					t.Fatalf("got %v, %v; want a token", tok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

// The controller's front: the cluster token reaches /internal/v1/ routes
// (through the table's cluster right), an API key does not; /metrics
// takes a key with the metrics (or admin) scope, and the cluster token
// does not open it; the probes need nothing.
func TestClusterFront(t *testing.T) {
	tok, err := auth.NewClusterToken("0123456789abcdef0123456789abcdef-cluster")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	secret := map[auth.Scope]string{}
	for _, scope := range []auth.Scope{auth.ScopeMetrics, auth.ScopeInvoke, auth.ScopeAdmin} {
		k, sec, err := auth.Generate(auth.NewKey{Name: string(scope), Scope: scope}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		secret[scope] = sec
	}
	table := auth.NewTable(nil)
	table.Enforce(false)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ember_up 1\n") })
	controllerRoutes(table, cluster.NewLeader(cluster.LeaderOptions{}), tok, func() bool { return true }, metrics)
	h := clusterFront(tok, table, auth.New(db, auth.Options{}).Middleware)
	const clusterBearer = "Bearer 0123456789abcdef0123456789abcdef-cluster"
	tests := []struct {
		name, path, header string
		want               int
	}{
		{"token", "/internal/v1/endpoints?gateway=g&wait=0s", clusterBearer, 0},
		{"no token", "/internal/v1/endpoints?gateway=g&wait=0s", "", 401},
		{"wrong token", "/internal/v1/endpoints?gateway=g&wait=0s", "Bearer 0123456789abcdef0123456789abcdef-clustex", 401},
		{"admin key on internal", "/internal/v1/endpoints?gateway=g&wait=0s", "Bearer " + secret[auth.ScopeAdmin], 403},
		{"probe", "/healthz", "", 200},
		{"metrics, no key", "/metrics", "", 401},
		{"metrics, metrics key", "/metrics", "Bearer " + secret[auth.ScopeMetrics], 200},
		{"metrics, admin key", "/metrics", "Bearer " + secret[auth.ScopeAdmin], 200},
		{"metrics, invoke key", "/metrics", "Bearer " + secret[auth.ScopeInvoke], 403},
		{"metrics, cluster token", "/metrics", clusterBearer, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if tt.want == 0 {
				if w.Code == 401 || w.Code == 403 {
					t.Fatalf("token refused: %d %s", w.Code, w.Body)
				}
				return
			}
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
		})
	}
}
