package cli

import (
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/app"
)

// TestGCDefaultOnlyForServers: the commands that run a server set the
// GC target (even when they then fail on a flag), and `ember worker onnx`,
// which runs as an instance, keeps Go's default.
func TestGCDefaultOnlyForServers(t *testing.T) {
	t.Setenv("GOGC", "") // unset for os.Getenv: the default applies
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	tests := []struct {
		name string
		cmd  func() *cobra.Command
		args []string
		want int
	}{
		{"serve", newServeCmd, []string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--max-instances", "0"}, app.GCPercent},
		{"gateway", newGatewayCmd, []string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--max-instances", "0"}, app.GCPercent},
		{"worker onnx", newWorkerCmd, []string{"onnx", "--no-such-flag"}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			if _, err := runCmd(t, tt.cmd(), tt.args...); err == nil {
				t.Fatalf("%s %v succeeded; the test wants it to stop at its arguments", tt.name, tt.args)
			}
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("after %s, GC target = %d, want %d", tt.name, got, tt.want)
			}
		})
	}
}
