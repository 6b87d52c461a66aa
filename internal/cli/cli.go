// Package cli is the `ember` command line: serve the platform, and manage
// and call functions on a running server.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ember-run/ember/internal/client"
)

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, g := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ce *client.Error
		if g.keyless != "" && errors.As(err, &ce) && ce.Status == http.StatusUnauthorized {
			err = errors.New(g.keyless)
		}
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
	dataDir string
	json    bool
	quiet   bool

	// keyless is set by client() when no key was found anywhere, with
	// where it looked, so that a 401 can say how to set one.
	keyless string
}

func newRoot(stdout, stderr io.Writer) (*cobra.Command, *globals) {
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
	// Flags are left empty here: client() resolves flag > environment >
	// `ember login`'s config > <data-dir>/admin.key, and says where it
	// looked when it finds no key.
	pf.StringVar(&g.server, "server", "", "Ember server URL; a bare host:port means http:// (env EMBER_SERVER; else the `ember login` config; else "+defaultServer+")")
	pf.StringVar(&g.key, "api-key", "", "API key (env EMBER_API_KEY; else the `ember login` config; else <data-dir>/admin.key)")
	pf.StringVar(&g.keyFile, "key-file", "", "file holding the API key (env EMBER_KEY_FILE)")
	pf.StringVar(&g.dataDir, "data-dir", "", "the local server's data directory, whose admin.key is the last place the key is looked for (env EMBER_DATA_DIR; default ./.ember)")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of tables")

	root.AddCommand(
		newServeCmd(), newGatewayCmd(), newControllerCmd(), newDemoCmd(),
		newDeployCmd(g), newLsCmd(g), newDescribeCmd(g), newVersionsCmd(g), newRmCmd(g), newLogsCmd(g), newRunCmd(g),
		newLoginCmd(g), newLogoutCmd(g),
	)
	for _, extra := range extraCommands(g) {
		root.AddCommand(extra)
	}
	return root, g
}

// client returns an API client for the resolved server and key (see
// resolve). With no key found it still returns a client, since a server
// run with --auth=false needs none; a 401 then says where the key was
// looked for.
func (g *globals) client() (*client.Client, error) {
	t, err := resolve(g, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if t.key == "" {
		g.keyless = t.missingKey()
	}
	return client.New(t.server, t.key), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exactArgs is cobra.ExactArgs with the command's usage line in the error
// (usage is otherwise silenced), so `ember run` alone says what it needs.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("usage: %s (see %s --help)", cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
