package app

import (
	"strings"
	"testing"

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
