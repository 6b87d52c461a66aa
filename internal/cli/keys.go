package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/route"
)

// newKeysCmd is `ember keys create|ls|revoke`.
func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage API keys (admin)",
		Long: `Manage API keys. Requests carry a key as 'Authorization: Bearer <key>'.
An admin key may do everything; an invoke key may only run the functions and
routes it covers. On first start the server writes an admin key to
<data-dir>/admin.key, unless --admin-key-file gives it one (see keys generate).`,
	}
	cmd.AddCommand(newKeysCreateCmd(g), newKeysLsCmd(g), newKeysRevokeCmd(g), newKeysResetAdminCmd(), newKeysGenerateCmd())
	return cmd
}

// newKeysGenerateCmd prints a fresh key string and stores nothing: the
// content of the Secret that --admin-key-file mounts.
func newKeysGenerateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "generate",
		Short: "Print a new random key for --admin-key-file (stores nothing, needs no server)",
		Example: `  ember keys generate > admin.key
  kubectl -n ember create secret generic ember-admin-key --from-file=key=admin.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := auth.GenerateKeyString()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), k)
			return err
		},
	}
}

// newKeysResetAdminCmd is the offline recovery for a lost or corrupt
// admin.key: it works on the data dir directly, so it needs no key.
func newKeysResetAdminCmd() *cobra.Command {
	dataDir := config.Default().DataDir
	var store string
	cmd := &cobra.Command{
		Use:   "reset-admin --data-dir DIR",
		Short: "Create a new admin key and write it to <data-dir>/admin.key (server stopped)",
		Long: `Create a new admin key in the data dir's database and write it to
<data-dir>/admin.key (mode 0600), for when that file was lost or damaged. Run it
on the server's machine with the server stopped: it refuses while a server holds
the data dir. Existing keys stay valid; revoke any you no longer trust.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if v, ok := os.LookupEnv("EMBER_DATA_DIR"); ok && !cmd.Flags().Changed("data-dir") && strings.TrimSpace(v) != "" {
				dataDir = v
			}
			logger := app.NewLogger(config.Default(), cmd.ErrOrStderr())
			if v, ok := os.LookupEnv("EMBER_STORE"); ok && !cmd.Flags().Changed("store") {
				store = v
			}
			path, err := app.ResetAdminKey(cmd.Context(), dataDir, store, logger)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote a new admin key to %s\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "the server's data directory (env EMBER_DATA_DIR)")
	cmd.Flags().StringVar(&store, "store", "", "the server's --store, when not the data dir's SQLite file (env EMBER_STORE)")
	return cmd
}

func newKeysCreateCmd(g *globals) *cobra.Command {
	var req api.KeyCreate
	var functions string
	cmd := &cobra.Command{
		Use:   "create --name NAME --scope admin|invoke|metrics",
		Short: "Create an API key and print it (it is shown only once)",
		Example: `  ember keys create --name ci --scope invoke --functions echo,team-a/* --rate 20/s --burst 40 --max-concurrency 8 --expires 30d
  ember keys create --name ops --scope admin
  ember keys create --name prometheus --scope metrics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range strings.Split(functions, ",") {
				if f = strings.TrimSpace(f); f != "" {
					req.Functions = append(req.Functions, f)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.CreateKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, res)
			}
			fmt.Fprintf(out, "key %q created (id %s, scope %s%s)\n\n  %s\n\nStore it now: Ember keeps only its hash and will not show it again.\n",
				res.Key.Name, res.Key.ID, res.Key.Scope, keyLimits(res.Key), res.Secret)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "name of the key (required)")
	f.StringVar(&req.Scope, "scope", api.ScopeInvoke, "admin (everything), invoke (run covered functions only) or metrics (read /metrics only)")
	f.StringVar(&functions, "functions", "", "comma-separated functions or routes an invoke key may run (patterns like team-a/*); default all")
	f.StringVar(&req.Rate, "rate", "", "request rate limit, e.g. 20/s, 600/m, 1000/h (default unlimited)")
	f.IntVar(&req.Burst, "burst", 0, "requests allowed at once above the rate (default one second of rate)")
	f.IntVar(&req.MaxConcurrency, "max-concurrency", 0, "requests in flight at once (default unlimited)")
	f.StringVar(&req.Expires, "expires", "", "lifetime, e.g. 30d, 12h (default never)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func keyLimits(k api.Key) string {
	var parts []string
	if len(k.Functions) > 0 {
		parts = append(parts, "functions "+strings.Join(k.Functions, ","))
	}
	if k.RatePerSec > 0 {
		parts = append(parts, fmt.Sprintf("rate %s burst %d", keyRate(k.RatePerSec), k.Burst))
	}
	if k.MaxConcurrency > 0 {
		parts = append(parts, fmt.Sprintf("max concurrency %d", k.MaxConcurrency))
	}
	if k.ExpiresAt != nil {
		parts = append(parts, "expires "+k.ExpiresAt.Local().Format(time.DateTime))
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

// keyRate prints a rate in the unit that reads best: 20/s, 10/m, 5/h.
func keyRate(perSec float64) string {
	switch {
	case perSec == 0:
		return "-"
	case perSec >= 1:
		return strconv.FormatFloat(perSec, 'g', 4, 64) + "/s"
	case perSec*60 >= 1:
		return strconv.FormatFloat(perSec*60, 'g', 4, 64) + "/m"
	default:
		return strconv.FormatFloat(perSec*3600, 'g', 4, 64) + "/h"
	}
}

func newKeysLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List API keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			keys, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), keys)
			}
			return writeKeys(cmd.OutOrStdout(), keys, time.Now())
		},
	}
}

func writeKeys(w io.Writer, keys []api.Key, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tFUNCTIONS\tRATE\tBURST\tMAX CONC\tEXPIRES\tSTATUS")
	for _, k := range keys {
		fns := "*"
		if len(k.Functions) > 0 {
			fns = strings.Join(k.Functions, ",")
		}
		expires, status := "never", "active"
		if k.ExpiresAt != nil {
			expires = k.ExpiresAt.Local().Format(time.DateTime)
			if !now.Before(*k.ExpiresAt) {
				status = "expired"
			}
		}
		if k.RevokedAt != nil {
			status = "revoked"
		}
		conc := "-"
		if k.MaxConcurrency > 0 {
			conc = strconv.Itoa(k.MaxConcurrency)
		}
		burst := "-"
		if k.RatePerSec > 0 {
			burst = strconv.Itoa(k.Burst)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Scope, fns, keyRate(k.RatePerSec), burst, conc, expires, status)
	}
	return tw.Flush()
}

func newKeysRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke an API key; requests with it fail from now on",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s revoked\n", args[0])
			return nil
		},
	}
}

// newRouteCmd is `ember route apply|ls|rm`.
func newRouteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Manage hybrid routes between a persistent and a serverless target",
		Long: `A route is a public name with two targets, persistent and serverless (each an
Ember function or an external base URL), and a policy that picks one by
measured traffic. Call it like a function: /v1/run/NAME, or as the "model" of
the OpenAI-compatible endpoints. See docs/gateway.md.`,
	}
	cmd.AddCommand(newRouteApplyCmd(g), newRouteLsCmd(g), newRouteRmCmd(g))
	return cmd
}

func newRouteApplyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or update a route from a YAML or JSON file ('-' reads stdin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			var err error
			if args[0] == "-" {
				body, err = io.ReadAll(cmd.InOrStdin())
			} else {
				body, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			// Check locally first: the same validation as the server, with
			// the file's name in the message.
			if _, err := route.Parse(body); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.ApplyRoute(cmd.Context(), body)
			if err != nil {
				return err
			}
			return printApplied(cmd, g, res, "route", res.Route.Name, res.Created, res.Route.Version)
		},
	}
}

func newRouteLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List routes with their current choice and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			routes, err := c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), routes)
			}
			return writeRoutes(cmd.OutOrStdout(), routes)
		},
	}
}

func writeRoutes(w io.Writer, routes []api.Route) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPERSISTENT\tSERVERLESS\tPOLICY\tCHOICE\tQPS\tREASON")
	for _, r := range routes {
		var rt route.Route
		persistent, serverless, policy := "?", "?", "?"
		if json.Unmarshal(r.Spec, &rt) == nil {
			rt.Default()
			persistent, serverless = rt.Targets.Persistent.String(), rt.Targets.Serverless.String()
			policy = rt.Policy.Type
			if rt.Policy.Type == route.PolicyQPS {
				policy = fmt.Sprintf("qps>%g over %s", rt.Policy.Threshold, rt.Policy.Window.D())
			}
		}
		choice, qps, reason := "-", "-", "-"
		if s := r.Status; s != nil {
			choice, qps, reason = s.Choice, strconv.FormatFloat(s.QPS, 'f', 2, 64), s.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, persistent, serverless, policy, choice, qps, reason)
	}
	return tw.Flush()
}

func newRouteRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a route",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteRoute(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "route %s removed\n", args[0])
			return nil
		},
	}
}
