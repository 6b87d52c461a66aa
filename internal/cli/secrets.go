package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
)

// maxSecretRead bounds what `secrets set` reads; the server refuses more
// than 64 KiB and says so.
const maxSecretRead = 1 << 20

// newSecretsCmd is `ember secrets set|ls|rm`.
func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Manage secrets that specs and route headers refer to (admin)",
		Long: `Manage secrets. A function spec refers to one by name and gets its value
as an environment variable when an instance starts:

  env: {HF_TOKEN: {secret: hf-token}}

A route's URL target may send one in a header: {Authorization: "Bearer ${secret:vllm-key}"}.
No command or API ever shows a secret's value.`,
	}
	cmd.AddCommand(newSecretsSetCmd(g), newSecretsLsCmd(g), newSecretsRmCmd(g))
	return cmd
}

func newSecretsSetCmd(g *globals) *cobra.Command {
	var fromFile string
	cmd := &cobra.Command{
		Use:   "set NAME [--from-file FILE]",
		Short: "Create or replace a secret; the value is read from stdin (one trailing newline dropped) or a file (as is)",
		Example: `  printf %s "$HF_TOKEN" | ember secrets set hf-token
  ember secrets set tls-key --from-file ./key.pem`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			var err error
			if fromFile != "" {
				value, err = readBounded(fromFile)
			} else {
				value, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxSecretRead))
				// `echo value | ember secrets set` must not store the newline.
				value = bytes.TrimSuffix(value, []byte("\n"))
				value = bytes.TrimSuffix(value, []byte("\r"))
			}
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.PutSecret(cmd.Context(), args[0], value)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			verb := "updated"
			if res.Created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %q %s\n", res.Secret.Name, verb)
			return nil
		},
	}
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file instead of stdin")
	return cmd
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSecretRead))
}

func newSecretsLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List secrets (names and times, never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Secrets(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return writeSecrets(cmd.OutOrStdout(), list)
		},
	}
}

func writeSecrets(w io.Writer, list []api.Secret) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tUPDATED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.CreatedAt.Local().Format(time.DateTime), s.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func newSecretsRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a secret (running instances keep their value; later starts that need it fail, naming it)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %q removed\n", args[0])
			return nil
		},
	}
}
