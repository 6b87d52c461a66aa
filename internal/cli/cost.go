package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/keepalive"
	"github.com/ember-run/ember/internal/spec"
)

// costFlags are the workload flags shared by `ember cost` and `ember advise`.
type costFlags struct {
	in          cost.Inputs
	idleTimeout time.Duration
	coldStart   time.Duration
	trace       string
	prices      string
	engine      string
	json, csv   bool
	// keep-warm evaluation (ember cost --policy)
	policies    []string
	traceFormat string
	durations   string
	coldUSD     float64
	coldWorth   time.Duration
	arrivals    string
}

// maxKeepWarmTrace bounds a --policy trace file: the readers bound
// functions and invocations, this bounds what is read to find them.
const maxKeepWarmTrace = 256 << 20

func (f *costFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Float64Var(&f.in.RequestsPerDay, "requests-per-day", 0, "mean requests per day (taken from --trace when omitted)")
	fl.Float64Var(&f.in.SecondsPerRequest, "seconds-per-request", 0, "service seconds per request once an instance is ready")
	fl.StringVar(&f.in.Hardware, "hardware", "a100-40gb", "hardware class, as listed by ember prices")
	fl.IntVar(&f.in.GPUsPerInstance, "gpus", 0, "GPUs per instance (default 1; 0 for cpu)")
	fl.IntVar(&f.in.Concurrency, "concurrency", 1, "in-flight requests per instance")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", cost.DefaultIdleTimeout, "keep-warm window before an idle instance stops")
	fl.IntVar(&f.in.Min, "min", 0, "instances kept warm always")
	fl.IntVar(&f.in.Max, "max", 0, "most instances (default 1000)")
	fl.DurationVar(&f.coldStart, "cold-start", cost.DefaultColdStart, "instance start-to-ready time")
	fl.StringVar(&f.in.Shape, "shape", cost.ShapePoisson, "arrival shape: poisson, diurnal or bursty")
	fl.Float64Var(&f.in.Target, "target", cost.DefaultTarget, "target utilisation for sizing and autoscaling")
	fl.Uint64Var(&f.in.Seed, "seed", cost.DefaultSeed, "random seed of the simulation")
	fl.StringVar(&f.trace, "trace", "", "arrival trace file (CSV with TIMESTAMP column, or unix seconds per line [,duration])")
	fl.StringVar(&f.prices, "prices", "", "price catalogue YAML merged over the defaults")
}

// inputs resolves file flags into cost inputs and the catalogue.
func (f *costFlags) inputs() (cost.Inputs, *cost.Catalogue, error) {
	in := f.in
	in.IdleTimeout = f.idleTimeout
	if f.idleTimeout == 0 {
		in.IdleTimeout = -1 // explicit 0s: stop as soon as idle
	}
	in.ColdStart = f.coldStart
	if f.coldStart == 0 {
		in.ColdStart = -1
	}
	cat, err := loadCatalogue(f.prices)
	if err != nil {
		return in, nil, err
	}
	if f.trace != "" {
		fh, err := os.Open(f.trace)
		if err != nil {
			return in, nil, fmt.Errorf("--trace: %w", err)
		}
		defer fh.Close()
		tr, err := cost.ParseTrace(fh)
		if err != nil {
			return in, nil, fmt.Errorf("--trace %s: %w", f.trace, err)
		}
		in.Trace = tr
	}
	if in.SecondsPerRequest == 0 && in.Trace.MeanDuration() == 0 {
		return in, nil, errors.New("--seconds-per-request is required (the trace has no durations)")
	}
	return in, cat, nil
}

func loadCatalogue(path string) (*cost.Catalogue, error) {
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return cat, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--prices: %w", err)
	}
	return cat.Merge(b)
}

func newCostCmd() *cobra.Command {
	var f costFlags
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "Compare always-on, Ember serverless and hosted offers for a workload",
		Long: `Estimate a month (30 days) of running one model: always-on fleets, Ember
serverless (busy + cold-start + keep-warm idle seconds) and each hosted offer
under its own billing rules, with utilisation, savings and the crossover
requests/day of each pair.

  ember cost --requests-per-day 1000 --seconds-per-request 5 --hardware a100-40gb

With --policy, replay a multi-function trace (Azure Functions 2019 per-minute
counts, arrivals placed at seeded-uniform times within each minute, or 2021
per-invocation) through the real autoscaler under each keep-warm policy and
compare cold-start rate (overall and 75th percentile over functions) and idle
instance-seconds with their price:

  ember cost --trace invocations.csv --durations durations.csv \
    --policy auto,fixed:10m,fixed:120s --cold-start 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.policies) > 0 || cmd.Flags().Changed("trace-format") {
				return f.keepWarm(cmd.OutOrStdout())
			}
			in, cat, err := f.inputs()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.csv {
				names, rows := cost.Sweep(in, cat, cost.LogLevels(100, 1_000_000, 41))
				return cost.WriteCSV(out, names, rows)
			}
			res, err := cost.Estimate(in, cat, f.engine)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(out, res)
			}
			if err := cost.WriteTable(out, res); err != nil {
				return err
			}
			fmt.Fprintln(out, "\nCOST BY REQUESTS/DAY (closed forms)")
			names, rows := cost.Sweep(in, cat, cost.SeedLevels)
			return writeSweepRows(out, names, rows)
		},
	}
	f.register(cmd)
	cmd.Flags().StringSliceVar(&f.policies, "policy", nil, "with --trace: compare keep-warm policies on a multi-function Azure Functions trace: auto, fixed:DURATION (repeat or comma-separate, e.g. auto,fixed:10m,fixed:120s)")
	cmd.Flags().StringVar(&f.traceFormat, "trace-format", "auto", "with --policy: azure2019 (per-minute counts), azure2021 (per-invocation) or auto (from the header)")
	cmd.Flags().StringVar(&f.durations, "durations", "", "with --policy and an azure2019 trace: its durations file (Average ms per function; default 1 s per call)")
	cmd.Flags().Float64Var(&f.coldUSD, "cold-start-usd", 0, "with --policy: what one cold start's wait is worth to you in USD (overrides --cold-start-worth)")
	cmd.Flags().StringVar(&f.arrivals, "arrivals", string(cost.PlaceUniform), "with --policy and an azure2019 trace: where a minute's calls go within it: uniform (seeded random times, --seed) or even")
	cmd.Flags().DurationVar(&f.coldWorth, "cold-start-worth", keepalive.DefaultColdStartWorth, "with --policy: what one cold start's wait is worth, as that much of the hardware's time (scaling.cold_start_worth)")
	cmd.Flags().StringVar(&f.engine, "engine", cost.EngineAnalytic, "analytic, simulate (replays arrivals through the real autoscaler) or both")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object with options and crossovers")
	cmd.Flags().BoolVar(&f.csv, "csv", false, "print chart-ready monthly cost vs requests/day for each option")
	return cmd
}

func writeSweepRows(w io.Writer, names []string, rows []cost.SweepRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "REQUESTS/DAY\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%.0f\t", r.RequestsPerDay)
		for _, v := range r.MonthlyUSD {
			fmt.Fprintf(tw, "%.2f\t", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newPricesCmd() *cobra.Command {
	var prices string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "prices",
		Short: "List the price catalogue (defaults merged with --prices)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := loadCatalogue(prices)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, cat)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tHARDWARE\tGPUS\tUSD/HOUR\tUSD/SECOND\tBILLED\tINCREMENT\tAS OF\tSOURCE")
			for _, o := range cat.Offers {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.4f\t%.7f\t%v\t%gs\t%s\t%s\n", o.ID, o.Kind, o.Hardware, o.GPUsPerUnit,
					o.PerSecond()*3600, o.PerSecond(), o.Billing.BilledStates, o.Billing.MinIncrementSeconds, o.AsOf, o.Source)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&prices, "prices", "", "price catalogue YAML merged over the defaults")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalogue as JSON")
	return cmd
}

func newAdviseCmd(g *globals) *cobra.Command {
	var f costFlags
	var window time.Duration
	var (
		function string
		peakQPS  float64
		latency  time.Duration
		modelGB  float64
	)
	cmd := &cobra.Command{
		Use:   "advise",
		Short: "Recommend serverless, provisioned, always-on or async for a workload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if function != "" {
				measured, err := measuredWorkload(cmd, g, function, window)
				if err != nil {
					return err
				}
				fl := cmd.Flags()
				for name, set := range map[string]func(){
					"requests-per-day":    func() { f.in.RequestsPerDay = measured.in.RequestsPerDay },
					"seconds-per-request": func() { f.in.SecondsPerRequest = measured.in.SecondsPerRequest },
					"hardware":            func() { f.in.Hardware = measured.in.Hardware },
					"concurrency":         func() { f.in.Concurrency = measured.in.Concurrency },
					"min":                 func() { f.in.Min = measured.in.Min },
					"max":                 func() { f.in.Max = measured.in.Max },
					"idle-timeout":        func() { f.idleTimeout = measured.in.IdleTimeout },
					"cold-start":          func() { f.coldStart = measured.in.ColdStart },
				} {
					if !fl.Changed(name) {
						set()
					}
				}
				if !fl.Changed("peak-qps") {
					peakQPS = measured.peakQPS
				}
				if !f.json {
					fmt.Fprintf(cmd.OutOrStdout(), "measured %s over %s: %.0f requests/day, %.3fs per request, %.1f%% cold starts, cold start %.2fs, peak %.2f req/s (hourly mean), on %s\n\n",
						function, measured.span.Round(time.Minute), f.in.RequestsPerDay, f.in.SecondsPerRequest, 100*measured.coldShare,
						f.coldStart.Seconds(), peakQPS, f.in.Hardware)
				}
			}
			in, cat, err := f.inputs()
			if err != nil {
				return err
			}
			recs, err := cost.Advise(cost.AdviceInputs{Workload: in, PeakQPS: peakQPS, LatencyBudget: latency, ModelGB: modelGB, Catalogue: cat})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				return writeJSON(out, map[string]any{"recommendations": recs})
			}
			for _, r := range recs {
				fmt.Fprintf(out, "%s → %s\n  %s\n  monthly %.2f USD (vs %s %.2f USD)\n", r.Rule, r.Mode, r.Why, r.MonthlyUSD, r.Alternative, r.AlternativeUSD)
				name := function
				if name == "" {
					name = "my-model"
				}
				if y := r.Change.SpecYAML(); y != "" {
					fmt.Fprintf(out, "  spec change (merge into %s's spec, then ember deploy FILE):\n", name)
					for _, line := range strings.Split(strings.TrimSuffix(y, "\n"), "\n") {
						fmt.Fprintf(out, "    %s\n", line)
					}
				}
				if h := r.Change.InvokeHint(name); h != "" {
					fmt.Fprintf(out, "  %s\n", h)
				}
				if rs := r.Change.RouteSpec(name); rs != "" {
					fmt.Fprintf(out, "  and a route in front (ember route apply FILE; %s-serverless is a min-0 copy of %s; callers then call %s-route):\n", name, name, name)
					for _, line := range strings.Split(strings.TrimSuffix(rs, "\n"), "\n") {
						fmt.Fprintf(out, "    %s\n", line)
					}
				}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&function, "function", "", "advise a deployed function from its metered traffic (flags given explicitly override the measurements)")
	cmd.Flags().DurationVar(&window, "window", 7*24*time.Hour, "with --function: how much metered history to use")
	cmd.Flags().Float64Var(&peakQPS, "peak-qps", 0, "peak requests per second")
	cmd.Flags().DurationVar(&latency, "latency-budget", 0, "response-time budget, e.g. 80ms")
	cmd.Flags().Float64Var(&modelGB, "model-gb", 0, "model size in GB")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON")
	return cmd
}

// measured is a deployed function's workload as metering saw it.
type measured struct {
	in        cost.Inputs
	span      time.Duration
	peakQPS   float64
	coldShare float64
}

// measuredWorkload reads a function's spec and metered usage from the
// server and turns them into cost-model inputs.
func measuredWorkload(cmd *cobra.Command, g *globals, function string, window time.Duration) (measured, error) {
	ctx := cmd.Context()
	c, err := g.client()
	if err != nil {
		return measured{}, err
	}
	fn, err := c.Function(ctx, function)
	if err != nil {
		return measured{}, err
	}
	var sp spec.Function
	if err := json.Unmarshal(fn.Spec, &sp); err != nil {
		return measured{}, fmt.Errorf("spec of %s: %w", function, err)
	}
	from := time.Now().Add(-window)
	if fn.CreatedAt.After(from) {
		from = fn.CreatedAt
	}
	rep, err := c.Usage(ctx, client.UsageQuery{Function: function, From: from.UTC().Format(time.RFC3339), By: "hour"})
	if err != nil {
		return measured{}, err
	}
	var u api.UsageFigures
	var periods []api.UsagePeriod
	for _, fu := range rep.Functions {
		if fu.Function == function {
			u, periods = fu.UsageFigures, fu.Periods
		}
	}
	if u.Requests == 0 {
		return measured{}, fmt.Errorf("advise --function %s: no metered requests since %s; pass the workload with --requests-per-day and --seconds-per-request", function, from.Format(time.RFC3339))
	}
	// Rates over minutes say little about a day: count at least an hour.
	span := max(time.Since(from), time.Hour)
	m := measured{span: span, coldShare: u.ColdStartShare}
	m.in.RequestsPerDay = float64(u.Requests) / span.Hours() * 24
	m.in.SecondsPerRequest = max(u.MeanDurationMs-u.MeanQueueMs, 1) / 1000
	m.in.Hardware = sp.HardwareClass()
	m.in.Concurrency = max(sp.Scaling.Concurrency, 1)
	m.in.Min, m.in.Max = sp.Scaling.Min, sp.Scaling.Max
	m.in.IdleTimeout = sp.Scaling.IdleTimeout.D()
	m.in.ColdStart = cost.DefaultColdStart
	if u.Starts > 0 && u.Seconds.Loading > 0 {
		m.in.ColdStart = time.Duration(u.Seconds.Loading / float64(u.Starts) * float64(time.Second))
	}
	for _, p := range periods {
		m.peakQPS = max(m.peakQPS, float64(p.Requests)/3600)
	}
	return m, nil
}

// keepWarm runs `ember cost --trace FILE --policy ...`.
func (f *costFlags) keepWarm(out io.Writer) error {
	if f.trace == "" {
		return errors.New("--policy needs --trace FILE (an Azure Functions 2019 or 2021 trace)")
	}
	if len(f.policies) == 0 {
		return errors.New("--trace-format needs --policy (auto, fixed:DURATION)")
	}
	var policies []cost.Policy
	seen := map[string]bool{}
	for _, s := range f.policies {
		p, err := cost.ParsePolicy(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		if !seen[p.Name] {
			seen[p.Name] = true
			policies = append(policies, p)
		}
	}
	if !(f.coldUSD >= 0) {
		return fmt.Errorf("--cold-start-usd: want a price ≥ 0, got %g", f.coldUSD)
	}
	if f.coldWorth <= 0 || f.coldWorth > spec.MaxColdStartWorth {
		return fmt.Errorf("--cold-start-worth: want a duration in (0, %s], got %s", spec.MaxColdStartWorth, f.coldWorth)
	}
	cat, err := loadCatalogue(f.prices)
	if err != nil {
		return err
	}
	gpus := f.in.GPUsPerInstance
	if gpus == 0 && f.in.Hardware != "cpu" {
		gpus = 1
	}
	price := cat.HostedPerSecond(f.in.Hardware, gpus)
	if !(price > 0) {
		return fmt.Errorf("--hardware %q: the price catalogue has no offer for it (ember prices lists the known ones)", f.in.Hardware)
	}
	open := func(flag, path string) (*os.File, error) {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		if st, err := fh.Stat(); err == nil && st.Size() > maxKeepWarmTrace {
			fh.Close()
			return nil, fmt.Errorf("%s %s: %d bytes, more than the %d MiB a trace may have", flag, path, st.Size(), maxKeepWarmTrace>>20)
		}
		return fh, nil
	}
	fh, err := open("--trace", f.trace)
	if err != nil {
		return err
	}
	defer fh.Close()
	var durations io.Reader
	if f.durations != "" {
		dh, err := open("--durations", f.durations)
		if err != nil {
			return err
		}
		defer dh.Close()
		durations = dh
	}
	place, err := cost.ParsePlacement(f.arrivals)
	if err != nil {
		return fmt.Errorf("--arrivals %w", err)
	}
	var mt *cost.MultiTrace
	switch f.traceFormat {
	case "auto", "":
		mt, err = cost.ParseMultiTrace(fh, durations, f.in.Seed, place)
	case "azure2019":
		mt, err = cost.ParseAzure2019Placed(fh, durations, f.in.Seed, place)
	case "azure2021":
		mt, err = cost.ParseAzure2021(fh)
	default:
		return fmt.Errorf("--trace-format %q: want auto, azure2019 or azure2021", f.traceFormat)
	}
	if err != nil {
		return fmt.Errorf("--trace %s: %w", f.trace, err)
	}
	if f.in.SecondsPerRequest > 0 {
		mt.Duration = f.in.SecondsPerRequest
	}
	base := cost.Inputs{Hardware: f.in.Hardware, GPUsPerInstance: f.in.GPUsPerInstance, ColdStart: f.coldStart,
		Concurrency: f.in.Concurrency, Max: f.in.Max, Target: f.in.Target}
	worth := keepalive.Prices{ColdStartUSD: f.coldUSD, ColdStartWorth: f.coldWorth}
	rs, err := cost.EvaluateKeepWarm(mt, policies, base, price, worth, keepalive.Config{})
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(out, map[string]any{"functions": len(mt.Functions), "span_s": mt.Span, "hardware": f.in.Hardware,
			"usd_per_second": price, "cold_start_s": f.coldStart.Seconds(), "policies": rs})
	}
	said := fmt.Sprintf("%s of the hardware ($%.4f)", f.coldWorth, f.coldWorth.Seconds()*price)
	if f.coldUSD > 0 {
		said = fmt.Sprintf("$%g", f.coldUSD)
	}
	fmt.Fprintf(out, "%d functions over %.1f h on %s ($%.6f/s); cold start %s, worth %s; 2019 arrivals %s within a minute\n",
		len(mt.Functions), mt.Span/3600, f.in.Hardware, price, f.coldStart, said, place)
	return cost.WriteKeepWarm(out, rs)
}
