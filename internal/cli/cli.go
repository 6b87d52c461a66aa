// Package cli is the `ember` command line: serve the platform, and manage
// and call functions on a running server.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/client"
)

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, "ember:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "ember:", err)
		return 1
	}
	return 0
}

// exitError ends the command with a given code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// globals are the flags every client command shares.
type globals struct {
	server  string
	key     string
	keyFile string
	json    bool
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "ember",
		Short: "Ember runs AI models as functions that scale from zero",
		Long: `Ember runs model servers as functions that scale from zero: a request for a
sleeping function starts an instance, waits until it is ready, and the instance
stays warm for its idle timeout before scaling back to zero.

Start a server with 'ember serve', deploy a function with 'ember deploy FILE',
and call it with 'ember run NAME' or HTTP on /v1/run/NAME.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", envOr("EMBER_URL", "http://127.0.0.1:8080"), "Ember server URL (env EMBER_URL)")
	pf.StringVar(&g.key, "api-key", os.Getenv("EMBER_API_KEY"), "API key (env EMBER_API_KEY)")
	pf.StringVar(&g.keyFile, "key-file", envOr("EMBER_KEY_FILE", "./.ember/admin.key"), "file holding the API key, used when --api-key is not set (env EMBER_KEY_FILE)")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of tables")

	root.AddCommand(
		newServeCmd(), newDemoCmd(),
		newDeployCmd(g), newLsCmd(g), newDescribeCmd(g), newRmCmd(g), newLogsCmd(g), newRunCmd(g),
	)
	for _, extra := range extraCommands(g) {
		root.AddCommand(extra)
	}
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client returns an API client. The key comes from --api-key or
// EMBER_API_KEY, else from the key file that `ember serve` writes.
func (g *globals) client() *client.Client {
	key := g.key
	if key == "" && g.keyFile != "" {
		if k, err := auth.ReadKeyFile(g.keyFile); err == nil {
			key = k
		}
	}
	return client.New(g.server, key)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
