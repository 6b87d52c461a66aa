package app

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ember-run/ember/internal/config"
)

func TestClusterAuth(t *testing.T) {
	const token = "0123456789abcdef-cluster"
	h := clusterAuth(token)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	tests := []struct {
		name, header string
		want         int
	}{
		{"right token", "Bearer " + token, 200},
		{"none", "", 401},
		{"wrong", "Bearer 0123456789abcdef-clustex", 401},
		{"prefix", "Bearer " + token[:10], 401},
		{"not bearer", token, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/internal/v1/report", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestClusterTokenBounds(t *testing.T) {
	t.Setenv("EMBER_CLUSTER_TOKEN", "short")
	if _, err := clusterToken(config.Default()); err == nil {
		t.Error("a 5-character token accepted")
	}
	t.Setenv("EMBER_CLUSTER_TOKEN", "")
	if _, err := clusterToken(config.Default()); err == nil {
		t.Error("no token accepted")
	}
}
