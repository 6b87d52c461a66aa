package cli

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/config"
)

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Ember server (API, activator, autoscaler) on embedded defaults",
		Long: `Run the Ember server. State lives in an embedded SQLite database under
--data-dir (or in PostgreSQL with --store postgres://…, shared by several
servers: each sees the others' deploys within a second and runs their
jobs); deployed functions survive a restart. SIGTERM or Ctrl-C drains:
/readyz fails, the listener closes, in-flight requests get --grace to finish,
and every instance is stopped.

Every flag can also be set with the environment variable shown.`,
		Args: cobra.NoArgs,
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
			return app.Serve(ctx, cfg, logger, nil)
		},
	}
	addServerFlags(cmd.Flags(), &cfg)
	return cmd
}

// addServerFlags registers the flags `ember serve`, `ember gateway` and
// `ember controller` share, each with its environment variable.
func addServerFlags(f *pflag.FlagSet, cfg *config.Config) {
	h := knobHelp()
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, h("addr"))
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, h("data-dir"))
	f.DurationVar(&cfg.Grace, "grace", cfg.Grace, h("grace"))
	f.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, h("drain-delay"))
	f.DurationVar(&cfg.Tick, "tick", cfg.Tick, h("tick"))
	f.StringVar(&cfg.Store, "store", cfg.Store, h("store"))
	f.DurationVar(&cfg.StorePoll, "store-poll", cfg.StorePoll, h("store-poll"))
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, h("log-level"))
	f.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, h("log-format"))
	f.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", cfg.ReadHeaderTimeout, h("read-header-timeout"))
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, h("idle-timeout"))
	f.StringVar(&cfg.DefaultIdleTimeout, "default-idle-timeout", cfg.DefaultIdleTimeout, h("default-idle-timeout"))
	f.DurationVar(&cfg.DefaultColdStartWorth, "default-cold-start-worth", cfg.DefaultColdStartWorth, h("default-cold-start-worth"))
	f.BoolVar(&cfg.Auth, "auth", cfg.Auth, h("auth"))
	f.BoolVar(&cfg.OpenMetrics, "open-metrics", cfg.OpenMetrics, h("open-metrics"))
	f.BoolVar(&cfg.WebhookAllowPrivate, "webhook-allow-private", cfg.WebhookAllowPrivate, h("webhook-allow-private"))
	f.StringSliceVar(&cfg.WebhookAllow, "webhook-allow", cfg.WebhookAllow, h("webhook-allow"))
	// Loopback and private webhooks are refused by default now; the old
	// opt-in is accepted so existing command lines keep working.
	var blockPrivate bool
	f.BoolVar(&blockPrivate, "webhook-block-private", false, "")
	_ = f.MarkDeprecated("webhook-block-private", "loopback and private webhooks are refused by default; see --webhook-allow")
	f.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, h("cache-dir"))
	f.IntVar(&cfg.ONNXPool, "onnx-pool", cfg.ONNXPool, h("onnx-pool"))
	f.IntVar(&cfg.ONNXThreads, "onnx-threads", cfg.ONNXThreads, h("onnx-threads"))
	f.IntVar(&cfg.ONNXLoaded, "onnx-loaded", cfg.ONNXLoaded, h("onnx-loaded"))
	f.StringVar(&cfg.ORTLib, "ort-lib", cfg.ORTLib, h("ort-lib"))
	f.StringSliceVar(&cfg.InheritEnv, "inherit-env", cfg.InheritEnv, h("inherit-env"))
	f.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, h("tls-cert"))
	f.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, h("tls-key"))
	f.IntVar(&cfg.MaxInstancesPerFunction, "max-instances-per-function", cfg.MaxInstancesPerFunction, h("max-instances-per-function"))
	f.IntVar(&cfg.MaxInstances, "max-instances", cfg.MaxInstances, h("max-instances"))
	f.IntVar(&cfg.MaxConcurrentStarts, "max-concurrent-starts", cfg.MaxConcurrentStarts, h("max-concurrent-starts"))
	f.IntVar(&cfg.RequestRecords, "request-records", cfg.RequestRecords, h("request-records"))
	f.Int64Var(&cfg.BodyPreReadBytes, "body-preread-bytes", cfg.BodyPreReadBytes, h("body-preread-bytes"))
	f.Int64Var(&cfg.BodyBufferBudget, "body-buffer-budget", cfg.BodyBufferBudget, h("body-buffer-budget"))
	f.Int64Var(&cfg.MinBodyRate, "min-body-rate", cfg.MinBodyRate, h("min-body-rate"))
	f.StringVar(&cfg.ContainerHost, "container-host", cfg.ContainerHost, h("container-host"))
	f.StringVar(&cfg.ContainerNetwork, "container-network", cfg.ContainerNetwork, h("container-network"))
	f.StringSliceVar(&cfg.ContainerUlimits, "container-ulimit", cfg.ContainerUlimits, h("container-ulimit"))
	f.StringVar(&cfg.ContainerOCIRuntime, "container-oci-runtime", cfg.ContainerOCIRuntime, h("container-oci-runtime"))
	f.StringSliceVar(&cfg.ContainerAllowHostPaths, "container-allow-host-path", cfg.ContainerAllowHostPaths, h("container-allow-host-path"))
	f.IntVar(&cfg.ContainerPrewarm, "container-prewarm", cfg.ContainerPrewarm, h("container-prewarm"))
	f.StringVar(&cfg.ContainerGPUDriver, "container-gpu-driver", cfg.ContainerGPUDriver, h("container-gpu-driver"))
	f.StringVar(&cfg.GPUs, "gpus", cfg.GPUs, h("gpus"))
	f.StringVar(&cfg.Backend, "backend", cfg.Backend, h("backend"))
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, h("kubeconfig"))
	f.StringVar(&cfg.KubeNamespace, "kube-namespace", cfg.KubeNamespace, h("kube-namespace"))
	f.StringVar(&cfg.KubeNetwork, "kube-network", cfg.KubeNetwork, h("kube-network"))
	f.StringVar(&cfg.KubeWorkerImage, "kube-worker-image", cfg.KubeWorkerImage, h("kube-worker-image"))
	f.StringVar(&cfg.KubeModels, "kube-models", cfg.KubeModels, h("kube-models"))
	f.StringVar(&cfg.AdminKeyFile, "admin-key-file", cfg.AdminKeyFile, h("admin-key-file"))
	f.DurationVar(&cfg.JobLease, "job-lease", cfg.JobLease, h("job-lease"))
}

// addRoleFlags registers the flags of the roles: the Lease, this node's
// name and address, the cluster credential.
func addRoleFlags(f *pflag.FlagSet, cfg *config.Config) {
	h := knobHelp()
	f.StringVar(&cfg.LeaseName, "lease-name", cfg.LeaseName, h("lease-name"))
	f.DurationVar(&cfg.LeaseDuration, "lease-duration", cfg.LeaseDuration, h("lease-duration"))
	f.DurationVar(&cfg.LeaseRenewDeadline, "lease-renew-deadline", cfg.LeaseRenewDeadline, h("lease-renew-deadline"))
	f.DurationVar(&cfg.LeaseRetryPeriod, "lease-retry-period", cfg.LeaseRetryPeriod, h("lease-retry-period"))
	f.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, h("node-name"))
	f.StringVar(&cfg.ClusterTokenFile, "cluster-token-file", cfg.ClusterTokenFile, h("cluster-token-file"))
}

// knobHelp returns a flag's help with its environment variable.
func knobHelp() func(flag string) string {
	help := map[string]string{}
	env := map[string]string{}
	for _, k := range config.Knobs() {
		help[k.Flag], env[k.Flag] = k.Help, k.Env
	}
	return func(flag string) string { return fmt.Sprintf("%s (env %s)", help[flag], env[flag]) }
}

// applyEnv sets every flag not given on the command line from its
// environment variable, so flags win over the environment.
func applyEnv(fs *pflag.FlagSet) error {
	for _, k := range config.Knobs() {
		fl := fs.Lookup(k.Flag)
		if fl == nil || fl.Changed {
			continue
		}
		if v, ok := os.LookupEnv(k.Env); ok && strings.TrimSpace(v) != "" {
			if err := fl.Value.Set(v); err != nil {
				return fmt.Errorf("%s=%q: %w", k.Env, v, err)
			}
		}
	}
	return nil
}

// guardCommand is `ember worker guard` run from this executable, or nil
// when it cannot be located.
func guardCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "worker", "guard"}
}
