package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// readData reads --data: inline, @file or @- (stdin).
func readData(cmd *cobra.Command, data string) ([]byte, error) {
	switch {
	case data == "@-":
		return io.ReadAll(cmd.InOrStdin())
	case strings.HasPrefix(data, "@"):
		return os.ReadFile(data[1:])
	}
	return []byte(data), nil
}

func newSpawnCmd(g *globals) *cobra.Command {
	var data, webhook, key string
	var wait, cancelAfter time.Duration
	cmd := &cobra.Command{
		Use:   "spawn NAME",
		Short: "Submit an async job (a prediction) and print its id",
		Long: `Submit a durable async job: the input (JSON) is POSTed to the function's
predict_path when an instance is free, scaling it from zero if needed. The job
survives a server restart. Follow it with 'ember get ID --wait 600s'.`,
		Example: `  ember spawn sim --data '{"sleep_ms": 500, "echo": "hi"}'
  ember spawn sim --data @input.json --webhook https://example.com/hook`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := []byte("{}")
			if data != "" {
				var err error
				if in, err = readData(cmd, data); err != nil {
					return err
				}
			}
			if !json.Valid(in) {
				return fmt.Errorf("--data: input is not valid JSON")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.CreatePrediction(cmd.Context(), api.PredictionRequest{Model: args[0], Input: in, Webhook: webhook},
				client.PredictionOptions{Wait: wait, CancelAfter: cancelAfter, IdempotencyKey: key})
			if err != nil {
				return err
			}
			return printPrediction(cmd, g, p, true)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", "input JSON: inline, @file, or @- for stdin")
	f.StringVar(&webhook, "webhook", "", "URL that receives signed webhooks for this job")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "print only the job id (the default when stdout is not a terminal)")
	f.StringVar(&key, "idempotency-key", "", "a repeat with the same key within 24 h returns the original job")
	f.DurationVar(&wait, "wait", 0, "hold the answer up to this long for the result")
	f.DurationVar(&cancelAfter, "cancel-after", 0, "abort the job if not started, or cancel it if still running, after this long")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show an async job; --wait blocks until it finishes",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var p api.Prediction
			if wait > 0 {
				p, err = c.WaitPrediction(cmd.Context(), args[0], wait)
			} else {
				p, err = c.Prediction(cmd.Context(), args[0], 0)
			}
			if err != nil {
				return err
			}
			return printPrediction(cmd, g, p, false)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the job to finish (e.g. 600s)")
	return cmd
}

func newCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel an async job",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.CancelPrediction(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printPrediction(cmd, g, p, false)
		},
	}
}

func newWebhooksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webhooks", Short: "Webhook settings"}
	cmd.AddCommand(&cobra.Command{
		Use:   "secret",
		Short: "Print the secret that signs webhooks (Standard Webhooks, whsec_...)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			s, err := c.WebhookSecret(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s)
			return nil
		},
	})
	return cmd
}

func printPrediction(cmd *cobra.Command, g *globals, p api.Prediction, brief bool) error {
	w := cmd.OutOrStdout()
	if g.json {
		return printJSON(w, p)
	}
	if brief && p.CompletedAt == nil && (g.quiet || !isTerminal(w)) {
		// Just the id, for `ember get $(ember spawn ...)`.
		fmt.Fprintln(w, p.ID)
		return nil
	}
	fmt.Fprintf(w, "%s\t%s\t%s\n", p.ID, p.Model, p.Status)
	if brief && p.CompletedAt == nil {
		return nil
	}
	if len(p.Output) > 0 && string(p.Output) != "null" {
		fmt.Fprintf(w, "output: %s\n", p.Output)
	}
	if p.Error != nil {
		fmt.Fprintf(w, "error: %s\n", *p.Error)
	}
	if p.Metrics.PredictTime != nil {
		fmt.Fprintf(w, "predict_time: %.3fs", *p.Metrics.PredictTime)
		if p.Metrics.TotalTime != nil {
			fmt.Fprintf(w, "  total_time: %.3fs", *p.Metrics.TotalTime)
		}
		fmt.Fprintln(w)
	}
	if p.Status == api.PredictionFailed || p.Status == api.PredictionCanceled || p.Status == api.PredictionAborted {
		return &exitError{code: 1}
	}
	return nil
}
