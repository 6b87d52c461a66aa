package e2e

import (
	"encoding/json"
	"testing"

	"github.com/ember-run/ember/internal/api"
)

// TestColdStartOneConnection: from zero, the readiness probe (listening
// check and health GETs) and the first request share one connection to
// the new instance: the probe's keep-alive connection is handed to the
// proxy, so the cold start pays one connect and one accept, not two.
// With the notification the probe is cut where it stands: before its
// connect, the first request dials the one connection; an exchange under
// way gets 3 ms to finish, so only an instance slower than that to answer
// its health check (a loaded machine) sees a second connection.
func TestColdStartOneConnection(t *testing.T) {
	s := startServer(t, "")
	tests := []struct {
		name, extra string
		maxConns    int64
	}{
		{"probed", "", 1},
		{"notified", "env: {SIM_NOTIFY: 'true'}", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := "conn" + tt.name
			s.deploy(simSpec(fn, "{min: 0, max: 1, idle_timeout: 60s}", tt.extra))
			first := s.call("POST", "/v1/run/"+fn+"/predict", `{"echo": "one"}`)
			if first.status != 200 || first.header.Get(api.HeaderColdStart) != "true" {
				t.Fatalf("first call: %d cold=%q %s, want a 200 cold start", first.status, first.header.Get(api.HeaderColdStart), first.body)
			}
			st := s.call("GET", "/v1/run/"+fn+"/stats", "")
			if st.status != 200 {
				t.Fatalf("stats: %d %s", st.status, st.body)
			}
			var stats struct{ Served, Conns int64 }
			decode(t, st.body, &stats)
			if stats.Served != 1 {
				t.Errorf("served = %d, want 1", stats.Served)
			}
			if stats.Conns < 1 || stats.Conns > tt.maxConns {
				b, _ := json.Marshal(stats)
				t.Errorf("instance accepted %d connections for its readiness check, first request and a warm one, want at most %d (%s)", stats.Conns, tt.maxConns, b)
			}
		})
	}
}
