package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestRoleFlagsDocumented: every flag of `ember gateway` and `ember
// controller` has help naming its environment variable, and the Lease
// flags are there with their defaults.
func TestRoleFlagsDocumented(t *testing.T) {
	for _, cmd := range []*cobra.Command{newGatewayCmd(), newControllerCmd()} {
		for _, name := range []string{"lease-name", "lease-duration", "lease-renew-deadline", "lease-retry-period", "cluster-token-file", "node-name", "store", "kubeconfig", "kube-namespace"} {
			if cmd.Flags().Lookup(name) == nil {
				t.Errorf("%s: no --%s", cmd.Name(), name)
			}
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Deprecated == "" && !strings.Contains(f.Usage, "(env EMBER_") {
				t.Errorf("%s --%s: help %q names no environment variable", cmd.Name(), f.Name, f.Usage)
			}
		})
		if d := cmd.Flags().Lookup("lease-duration").DefValue; d != "15s" {
			t.Errorf("%s --lease-duration default %s, want 15s", cmd.Name(), d)
		}
	}
	if newControllerCmd().Flags().Lookup("advertise-addr") == nil {
		t.Error("controller: no --advertise-addr")
	}
}

func TestControllerRejectsBadLeaseTimings(t *testing.T) {
	args := []string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--lease-duration", "2s", "--lease-renew-deadline", "3s"}
	_, err := runCmd(t, newControllerCmd(), args...)
	if err == nil || !strings.Contains(err.Error(), "want duration > renew deadline > retry period > 0") {
		t.Errorf("err = %v, want the lease timings named", err)
	}
}
