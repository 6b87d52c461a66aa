package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

func newUsageCmd(g *globals) *cobra.Command {
	var (
		q        client.UsageQuery
		requests bool
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show metered instance-seconds, requests, cold starts and cost, and what always-on or hosted offers would have cost",
		Long: `Show what each function used, as metered: instance-seconds loading (cold
start), busy (requests in flight) and idle (kept warm), requests, cold-start
count and share, and cost at the hardware class's price; then what the same
traffic would have cost on an always-on fleet and on each per-second offer in
the price catalogue (ember prices).

--requests lists the requests themselves instead, newest first: when each
ended, its status, duration, queue wait, whether it was a cold start, and its
attributed cost (the server keeps the newest --request-records of them, for
at most 7 days).

--from and --to take RFC 3339 times, dates (2006-01-02, UTC) or durations
before now (24h). The default is the last 24 hours.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case cmd.Flags().Changed("limit") && !requests:
				return fmt.Errorf("--limit: only with --requests")
			case cmd.Flags().Changed("limit") && (limit < 1 || limit > 1000):
				return fmt.Errorf("--limit: want 1–1000 (got %d)", limit)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if requests {
				out, err := c.UsageRequests(cmd.Context(), q, limit)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(cmd.OutOrStdout(), out)
				}
				return writeUsageRequests(cmd.OutOrStdout(), out)
			}
			rep, err := c.Usage(cmd.Context(), q)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return writeUsage(cmd.OutOrStdout(), rep)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Function, "function", "", "one function (default all)")
	fl.StringVar(&q.From, "from", "", "start: RFC 3339, date, or duration before now (default 24h)")
	fl.StringVar(&q.To, "to", "", "end: RFC 3339, date, or duration before now (default now)")
	fl.StringVar(&q.By, "by", "hour", "period: hour or day")
	fl.BoolVar(&requests, "requests", false, "list the requests themselves, newest first")
	fl.IntVar(&limit, "limit", 0, "with --requests: at most this many (1–1000; default 100)")
	return cmd
}

func writeUsageRequests(w io.Writer, out api.UsageRequests) error {
	for _, n := range out.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if len(out.Requests) == 0 {
		if len(out.Notes) == 0 {
			fmt.Fprintf(w, "No requests recorded from %s to %s.\n", out.From.Local().Format(time.DateTime), out.To.Local().Format(time.DateTime))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDED\tFUNCTION\tHARDWARE\tSTATUS\tDURATION\tQUEUE\tCOLD\tCOST")
	for _, r := range out.Requests {
		cold := ""
		if r.Cold {
			cold = "cold"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.At.Local().Format("2006-01-02 15:04:05.000"),
			r.Function, r.Hardware, r.Status, msString(r.DurationMs), msString(r.QueueMs), cold, usdString(r.CostUSD))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if out.More {
		fmt.Fprintf(w, "(more before %s: --to %s, or a larger --limit)\n",
			out.Requests[len(out.Requests)-1].At.Local().Format(time.DateTime), out.Requests[len(out.Requests)-1].At.Format(time.RFC3339Nano))
	}
	return nil
}

// msString shows a duration in ms with the digits that matter.
func msString(ms float64) string {
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

func writeUsage(w io.Writer, rep api.UsageReport) error {
	fmt.Fprintf(w, "Usage from %s to %s, by %s\n", rep.From.Local().Format(time.DateTime), rep.To.Local().Format(time.DateTime), rep.By)
	if len(rep.Functions) == 0 {
		fmt.Fprintln(w, "\nNo metered usage in this window.")
	}
	for _, f := range rep.Functions {
		fmt.Fprintf(w, "\n%s on %s\n", f.Function, f.Hardware)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "PERIOD\tLOADING s\tBUSY s\tIDLE s\tUTIL\tREQUESTS\tCOLD\tCOLD %\tCOST\t")
		row := func(label string, u api.UsageFigures) {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f%%\t%d\t%d\t%.1f%%\t%s\t\n", label,
				u.Seconds.Loading, u.Seconds.Busy, u.Seconds.Idle, 100*u.Utilization,
				u.Requests, u.ColdStarts, 100*u.ColdStartShare, usdString(u.CostUSD))
		}
		layout := "2006-01-02 15:04"
		if rep.By == "day" {
			layout = time.DateOnly
		}
		for _, p := range f.Periods {
			row(p.Start.Local().Format(layout), p.UsageFigures)
		}
		row("total", f.UsageFigures)
		if err := tw.Flush(); err != nil {
			return err
		}
		if b := f.Budget; b != nil {
			limit := ""
			if b.USDPerDay > 0 {
				limit = usdString(b.USDPerDay) + "/day"
			}
			if b.GPUSecondsPerDay > 0 {
				if limit != "" {
					limit += ", "
				}
				limit += fmt.Sprintf("%.0f GPU-s/day", b.GPUSecondsPerDay)
			}
			state := "within"
			if b.Over {
				state = "OVER (" + b.Action + ")"
			}
			fmt.Fprintf(w, "Budget today: %s spent, %.0f GPU-s of %s: %s\n", usdString(b.SpentUSD), b.GPUSeconds, limit, state)
		}
		if len(f.Alternatives) > 0 {
			fmt.Fprintln(w, "Same traffic elsewhere:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, a := range f.Alternatives {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Name, usdString(a.CostUSD), a.Note)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	t := rep.Total
	fmt.Fprintf(w, "\nTotal: %d requests, %d cold (%.1f%%), %.1f instance-seconds (%.1f busy), %s\n",
		t.Requests, t.ColdStarts, 100*t.ColdStartShare, t.Seconds.Loading+t.Seconds.Busy+t.Seconds.Idle, t.Seconds.Busy, usdString(t.CostUSD))
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

// usdString shows small amounts with enough digits to be useful.
func usdString(v float64) string {
	switch {
	case v == 0:
		return "$0"
	case v < 0.000001:
		// A CPU function's request costs fractions of a millionth of a
		// dollar: three significant digits rather than "$0.000000".
		return fmt.Sprintf("$%.3g", v)
	case v < 0.01:
		return fmt.Sprintf("$%.6f", v)
	case v < 100:
		return fmt.Sprintf("$%.4f", v)
	}
	return fmt.Sprintf("$%.2f", v)
}
