package process

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// A start is seen as soon as the instance prints a line after it listens,
// without waiting for the cadence: here the cadence's next probe is ten
// minutes away, the sim does not notify, and it starts listening 50 ms in.
// Both ways of checking the port are run: a connect (the default, and the
// fallback) and the socket table (Options.ListenTable, Linux).
func TestStartSeenOnOutputWithoutPolling(t *testing.T) {
	needSim(t)
	t.Parallel()
	for _, tc := range []struct {
		name  string
		table bool
	}{
		{"socket table", true},
		{"connect", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.table && !listenTableSupported {
				t.Skip("no socket table on this system")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d := New(nil, Options{ProbeInitial: 10 * time.Minute, ProbeMax: 10 * time.Minute, ListenTable: tc.table})
			di, err := d.Start(ctx, driver.StartSpec{
				Function: "sim", InstanceID: "sim-1",
				Command: []string{simBin, "--notify=false"},
				Env:     map[string]string{"SIM_START_DELAY": "50ms"},
				// No health path: the kick covers the listening phase
				// only (a health probe is itself output), so listening
				// is what this start waits for.
			})
			if err != nil {
				t.Fatalf("Start: %v (tail %q)", err, startTail(err))
			}
			inst := di.(*Instance)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				inst.Stop(ctx)
			})
			if got := d.listenTable.Load(); got != tc.table {
				t.Errorf("socket table in use = %v, want %v", got, tc.table)
			}
			conn, err := net.Dial("tcp", inst.Addr())
			if err != nil {
				t.Fatalf("connect right after start: %v", err)
			}
			conn.Close()
		})
	}
}

// listening finds a real child process's listening socket in the socket
// table, and only while it listens.
func TestListeningSeesAChildsSocket(t *testing.T) {
	needSim(t)
	if !listenTableSupported {
		t.Skip("no socket table on this system")
	}
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if ok, err := listening("127.0.0.1", port); err != nil || ok {
		t.Fatalf("before the child: listening = %v, %v; want false, nil", ok, err)
	}
	cmd := exec.Command(simBin, "--notify=false")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "SIM_START_DELAY=20ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	waitFor(t, "the child's socket in the table", func() bool {
		ok, err := listening("127.0.0.1", port)
		if err != nil {
			t.Fatalf("listening: %v", err)
		}
		return ok
	})
	// The table says what a connect says.
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("table says listening, connect says %v", err)
	}
	conn.Close()
	// The same port on another address is not this instance.
	if ok, err := listening("127.0.0.2", port+1); err != nil || ok {
		t.Errorf("127.0.0.2:%d: listening = %v, %v; want false, nil", port+1, ok, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	exited = true
	if ok, err := listening("127.0.0.1", port); err != nil || ok {
		t.Errorf("after the child died: listening = %v, %v; want false, nil", ok, err)
	}
}
