package process

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// serveMain is the serveEnv helper: an HTTP server whose /health asks the
// prober to close the connection after its answer.
func serveMain(mode string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("PORT")))
	if err != nil {
		return 1
	}
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if mode == "close" {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("ok"))
	})
	http.Serve(ln, nil)
	return 0
}

// simConns asks the sim on nc (a connection to it) how many connections
// it has accepted; nc stays usable.
func simConns(t *testing.T, nc net.Conn) int64 {
	t.Helper()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+nc.RemoteAddr().String()+"/stats", nil)
	if err := req.Write(nc); err != nil {
		t.Fatalf("write on the handed-over connection: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), req)
	if err != nil {
		t.Fatalf("read on the handed-over connection: %v", err)
	}
	defer resp.Body.Close()
	var st struct{ Conns int64 }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Conns
}

// TestProbeConnectionHandedOver: the listening check's connection carries
// the health probes and is then handed over (driver.ConnHandoff), so the
// instance accepts exactly one connection for its whole readiness check
// and the first request sent on it.
func TestProbeConnectionHandedOver(t *testing.T) {
	needSim(t)
	t.Parallel()
	tests := []struct {
		name       string
		env        map[string]string
		healthPath string
	}{
		{name: "ready at once", healthPath: "/health"},
		{name: "health fails while loading", env: map[string]string{"SIM_LOAD_DELAY": "40ms"}, healthPath: "/health"},
		{name: "no health path: listening is ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			di, err := New(nil, Options{}).Start(ctx, driver.StartSpec{Command: []string{simBin}, Env: tt.env, HealthPath: tt.healthPath})
			if err != nil {
				t.Fatal(err)
			}
			inst := di.(*Instance)
			t.Cleanup(func() { inst.Stop(context.Background()) })
			nc := inst.TakeConn()
			if nc == nil {
				t.Fatal("TakeConn = nil, want the probe's connection")
			}
			defer nc.Close()
			if again := inst.TakeConn(); again != nil {
				t.Errorf("second TakeConn = %v, want nil (taken once)", again.LocalAddr())
			}
			if n := simConns(t, nc); n != 1 {
				t.Errorf("instance accepted %d connections for the probe and a request, want 1", n)
			}
		})
	}
}

// TestProbeConnectionNotHandedOverWhenClosed: an instance that answers its
// health check with Connection: close leaves nothing to hand over.
func TestProbeConnectionNotHandedOverWhenClosed(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	di, err := New(nil, Options{}).Start(ctx, driver.StartSpec{Command: []string{exe},
		Env: map[string]string{serveEnv: "close"}, HealthPath: "/health"})
	if err != nil {
		t.Fatal(err)
	}
	inst := di.(*Instance)
	defer inst.Stop(context.Background())
	if nc := inst.TakeConn(); nc != nil {
		nc.Close()
		t.Error("TakeConn returned a connection the instance asked to close")
	}
}

// TestProbeConnectionClosedAtExit: a connection nobody took goes with the
// instance.
func TestProbeConnectionClosedAtExit(t *testing.T) {
	needSim(t)
	t.Parallel()
	inst := start(t, driver.StartSpec{Command: []string{simBin}})
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if nc := inst.TakeConn(); nc != nil {
		nc.Close()
		t.Error("TakeConn after exit returned a connection, want nil")
	}
}
