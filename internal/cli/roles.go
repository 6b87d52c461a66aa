package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/config"
)

// roleCmd builds `ember gateway` and `ember controller`: serve's flags,
// the roles' flags, and run.
func roleCmd(use, short, long string, run func(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(string)) error, extra func(*config.Config, *cobra.Command)) *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + "\n\nEvery flag can also be set with the environment variable shown.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			app.SetGCDefault(os.Getenv)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			logger := app.NewLogger(cfg, cmd.ErrOrStderr())
			cfg.GuardCommand = guardCommand()
			cfg.ClusterToken = os.Getenv("EMBER_CLUSTER_TOKEN")
			return run(ctx, cfg, logger, nil)
		},
	}
	addServerFlags(cmd.Flags(), &cfg)
	addRoleFlags(cmd.Flags(), &cfg)
	if extra != nil {
		extra(&cfg, cmd)
	}
	return cmd
}

func newGatewayCmd() *cobra.Command {
	return roleCmd("gateway", "Run a gateway replica: the API, auth, activator queue, proxy and job workers",
		`Run one of N gateway replicas behind a Service. A gateway serves the
whole API (as `+"`ember serve`"+` does) from the shared PostgreSQL store, but
starts no instances: it finds the leader controller from the Lease
(--lease-name in --kube-namespace), reports its demand every second and
at once when a request waits for a function with no ready instance, and
dispatches within its share of each instance's concurrency, which the
leader splits over the live gateways. While the leader is unreachable,
warm functions keep being served from the last known endpoints; calls to
functions at zero wait in the queue (up to their timeout).

Needs --store postgres://… and the cluster credential
(EMBER_CLUSTER_TOKEN or --cluster-token-file).`, app.Gateway, nil)
}

func newControllerCmd() *cobra.Command {
	return roleCmd("controller", "Run a controller replica: leader-elected autoscaler and instance manager",
		`Run one of the controller replicas (two for availability). They elect a
leader with a coordination.k8s.io Lease (--lease-name, --lease-duration,
--lease-renew-deadline, --lease-retry-period); the holder identity is
<node name>_<advertise address>, which is how gateways find the leader.
The leader loads the functions, adopts the instances its driver already
runs (by label, so a new leader starts no duplicates), runs the
autoscaler and the instance manager, and answers the gateways' reports
on /internal/v1/ with their endpoint shares. A standby answers 503 naming
the holder. A leader that loses the Lease exits at once, as
kube-controller-manager does; its supervisor restarts it as a standby.

Needs --store postgres://… and the cluster credential
(EMBER_CLUSTER_TOKEN or --cluster-token-file).`, app.Controller,
		func(cfg *config.Config, cmd *cobra.Command) {
			cmd.Flags().StringVar(&cfg.AdvertiseAddr, "advertise-addr", cfg.AdvertiseAddr, knobHelp()("advertise-addr"))
		})
}
