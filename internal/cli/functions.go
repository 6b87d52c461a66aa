package cli

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

func newDeployCmd(g *globals) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "deploy FILE",
		Short: "Create or update a function from a YAML or JSON spec ('-' reads stdin)",
		Long: `Create or update a function. An update replaces instances without failing
requests in flight: old instances drain and stop once idle.

With --wait, deploy returns once the new version is ready (max(1, min)
instances of it, and no older one serving), starting one instance at min 0
(metered like any cold start; it idles out as usual). A start that fails
ends the wait with its error and a non-zero exit.`,
		Args: exactArgs(1),
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
			c, err := g.client()
			if err != nil {
				return err
			}
			deploy := c.Deploy
			if wait {
				deploy = c.DeployWait
			}
			res, err := deploy(cmd.Context(), body)
			if err != nil {
				return err
			}
			if err := printApplied(cmd, g, res, "function", res.Function.Name, res.Created, res.Function.Version); err != nil || !wait {
				return err
			}
			return waitRollout(cmd, g, c, res.Function.Name, res.Function.Version, timeout)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the new version is ready; fail with its start error")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: how long to wait")
	return cmd
}

// waitRollout polls the rollout of name's version until it completes
// (nil), fails (its start error), is superseded or times out.
func waitRollout(cmd *cobra.Command, g *globals, c *client.Client, name string, version int64, timeout time.Duration) error {
	ctx := cmd.Context()
	start := time.Now()
	deadline := start.Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ro, err := c.Rollout(ctx, name)
		if err != nil {
			return err
		}
		switch {
		case ro.Version != version:
			return fmt.Errorf("function %s: version %d was deployed while waiting for version %d", name, ro.Version, version)
		case ro.State == api.RolloutComplete:
			if g.json {
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "function %s version %d ready (%d of %d instances, %s)\n",
				name, version, ro.Ready, ro.Want, time.Since(start).Round(time.Millisecond))
			return nil
		case ro.State == api.RolloutFailed:
			for _, l := range ro.LastLogs[max(0, len(ro.LastLogs)-5):] {
				fmt.Fprintf(cmd.ErrOrStderr(), "  | %s\n", l)
			}
			return fmt.Errorf("function %s version %d failed to start: %s", name, version, ro.Error)
		case time.Now().After(deadline):
			return fmt.Errorf("function %s version %d not ready after %s: %d of %d ready, %d starting (see ember describe %s)",
				name, version, timeout, ro.Ready, ro.Want, ro.Starting, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func newLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List deployed functions with their instance counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			fns, err := c.Functions(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), fns)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRUNTIME\tVERSION\tSTATE\tREADY\tSTARTING\tIN-FLIGHT\tDESIRED\tCOLD STARTS\tUPDATED\tLAST ERROR")
			for _, f := range fns {
				s := f.Status
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", f.Name, f.Runtime, f.Version, s.State, s.Ready, s.Starting,
					s.InFlight, s.Desired, s.ColdStarts, f.UpdatedAt.Local().Format(time.DateTime), oneLine(s.LastError, 120))
			}
			return tw.Flush()
		},
	}
}

func newDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a function's spec, scaling state and instances with cold-start phases",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := c.Function(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ins, err := c.Instances(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					api.Function
					Instances []api.Instance `json:"instances"`
				}{f, ins})
			}
			return describe(cmd.OutOrStdout(), f, ins)
		},
	}
}

func describe(w io.Writer, f api.Function, ins []api.Instance) error {
	s := f.Status
	fmt.Fprintf(w, "Name:        %s\nRuntime:     %s\nVersion:     %d\nUpdated:     %s\n", f.Name, f.Runtime, f.Version, f.UpdatedAt.Local().Format(time.RFC3339))
	fmt.Fprintf(w, "Instances:   %d ready, %d starting, %d failed (desired %d, min now %d)\n", s.Ready, s.Starting, s.Failed, s.Desired, s.MinNow)
	fmt.Fprintf(w, "In flight:   %d\nCold starts: %d\n", s.InFlight, s.ColdStarts)
	if s.Reason != "" {
		fmt.Fprintf(w, "Autoscaler:  %s", s.Reason)
		if s.Panic {
			fmt.Fprint(w, " [panic mode]")
		}
		fmt.Fprintln(w)
	}
	if k := s.KeepWarm; k != nil {
		fmt.Fprintf(w, "Keep-warm:   auto: pre-warm %gs, keep-alive %gs (%d idle times; %d of %d arrivals predicted, %d served warm)\n",
			k.PreWarmS, k.KeepAliveS, k.Samples, k.Predicted, k.Arrivals, k.Avoided)
		fmt.Fprintf(w, "             %s\n", k.Reason)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "Last error:  %s\n", s.LastError)
	}
	if b := s.Budget; b != nil {
		limit := fmt.Sprintf("$%.2f/day", b.USDPerDay)
		spent := fmt.Sprintf("$%.4f", b.SpentUSD)
		if b.USDPerDay == 0 {
			limit, spent = fmt.Sprintf("%.0f GPU-s/day", b.GPUSecondsPerDay), fmt.Sprintf("%.1f GPU-s", b.GPUSeconds)
		}
		state := "within budget"
		if b.Over {
			state = "OVER budget: " + b.Action
		}
		fmt.Fprintf(w, "Budget:      %s of %s today (UTC), %s (action %s)\n", spent, limit, state, b.Action)
	}
	// The store keeps the spec as JSON; it is shown as YAML, the form the
	// spec reference and examples use (keys sorted, defaults filled in).
	if y, err := yaml.JSONToYAML(f.Spec); err == nil && len(f.Spec) > 0 {
		fmt.Fprintf(w, "Spec:\n%s", indent(string(y), "  "))
	} else {
		var spec bytes.Buffer
		if err := jsonIndent(&spec, f.Spec); err == nil {
			fmt.Fprintf(w, "Spec:\n%s", indent(spec.String(), "  "))
		}
	}
	if len(f.InputSchema) > 0 {
		describeInputs(w, f.InputSchema)
	}
	fmt.Fprintln(w, "\nInstances:")
	if len(ins) == 0 {
		fmt.Fprintln(w, "  (none: the function is scaled to zero)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tVERSION\tSTATE\tIN-FLIGHT\tSERVED\tSTARTED\tCOLD START PHASES (ms)")
	outdated := 0
	for _, in := range ins {
		state := in.State
		if in.Outdated && in.State == api.StateReady {
			state = "ready (outdated)"
			outdated++
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", in.ID, in.Version, state, in.InFlight, in.Served,
			in.StartedAt.Local().Format(time.TimeOnly), phases(in))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if outdated > 0 {
		fmt.Fprintf(w, "  Rollout: %d instance(s) of an older version serve until instances of the current version are ready.\n", outdated)
	}
	coldStartTable(w, ins)
	for _, in := range ins {
		if in.ExitError == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s failed: %s\n", in.ID, in.ExitError)
		for _, l := range in.LastLogs {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	return nil
}

// phases renders phase durations in the order they happened.
func phases(in api.Instance) string {
	var parts []string
	total := 0.0
	for _, k := range in.PhaseOrder {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, in.Phases[k]))
		total += in.Phases[k]
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (total %.1f)", total)
}

func newVersionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "versions NAME",
		Short: "Show a function's deploy history: its last versions, when and by which key (--json: with specs)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			vs, err := c.Versions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), vs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tDEPLOYED\tBY KEY")
			for _, v := range vs {
				by := v.DeployedBy
				if by == "" {
					by = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.DeployedAt.Local().Format(time.DateTime), by)
			}
			return tw.Flush()
		},
	}
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a function (in-flight requests finish first)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "function %s removed\n", args[0])
			return nil
		},
	}
}

func newLogsCmd(g *globals) *cobra.Command {
	var tail int
	var follow bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the last lines of a function's instance logs; -f follows them",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			lines, err := c.Logs(cmd.Context(), args[0], tail)
			if err != nil {
				return err
			}
			if g.json && !follow {
				return printJSON(cmd.OutOrStdout(), lines)
			}
			print := func(ls []api.LogLine) {
				for _, l := range ls {
					if g.json {
						_ = json.NewEncoder(cmd.OutOrStdout()).Encode(l)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "[%s] %s\n", l.Instance, l.Line)
					}
				}
			}
			print(lines)
			if !follow {
				return nil
			}
			// Follow by polling the tail: each instance's new lines are
			// what follows the longest overlap with its previous window.
			// Bounded: one request per --interval, a window of followWindow
			// lines; Ctrl-C stops.
			prev := byInstance(lines)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-tick.C:
				}
				cur, err := c.Logs(cmd.Context(), args[0], followWindow)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				now := byInstance(cur)
				for _, l := range cur {
					id := l.Instance
					if _, done := now[id]; !done {
						continue
					}
					fresh := newLines(prev[id], now[id])
					for _, line := range fresh {
						print([]api.LogLine{{Instance: id, Line: line}})
					}
					delete(now, id) // printed once per poll
				}
				prev = byInstance(cur)
			}
		},
	}
	cmd.Flags().IntVarP(&tail, "tail", "n", 100, "number of lines")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "with -f: how often to poll the server")
	return cmd
}

// followWindow is how many recent lines `logs -f` asks for per poll: more
// new lines than this between two polls are partly missed.
const followWindow = 1000

func byInstance(ls []api.LogLine) map[string][]string {
	m := map[string][]string{}
	for _, l := range ls {
		m[l.Instance] = append(m[l.Instance], l.Line)
	}
	return m
}

// newLines returns the lines of cur after its longest prefix that is a
// suffix of prev: what an instance logged since prev was read.
func newLines(prev, cur []string) []string {
	for k := min(len(prev), len(cur)); k > 0; k-- {
		if slices.Equal(prev[len(prev)-k:], cur[:k]) {
			return cur[k:]
		}
	}
	return cur
}

func newRunCmd(g *globals) *cobra.Command {
	var path, data, method string
	var headers []string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Invoke a function and print its response",
		Long: `Invoke a function through Ember, exactly as POST /v1/run/NAME/PATH does,
and stream its response to stdout. --data takes the body inline or @file
('@-' reads stdin). -v prints Ember's response headers (cold start, instance,
queue time, Server-Timing) to stderr.`,
		Example: `  ember run sim --path /predict --data '{"echo": "hi"}'
  ember run sim --path /stream -X GET`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body io.Reader
			if data != "" {
				switch {
				case data == "@-":
					body = cmd.InOrStdin()
				case strings.HasPrefix(data, "@"):
					b, err := os.ReadFile(data[1:])
					if err != nil {
						return err
					}
					body = bytes.NewReader(b)
				default:
					body = strings.NewReader(data)
				}
			}
			if method == "" {
				method = http.MethodPost
				if body == nil {
					method = http.MethodGet
				}
			}
			h := http.Header{}
			if body != nil {
				h.Set("Content-Type", "application/json")
			}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok {
					return fmt.Errorf("header %q: want 'Name: value'", kv)
				}
				h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Run(cmd.Context(), args[0], method, path, body, h)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if verbose || resp.StatusCode >= 300 {
				fmt.Fprintf(cmd.ErrOrStderr(), "HTTP %d%s\n", resp.StatusCode, slotHeaders(resp.Header))
			}
			if resp.StatusCode >= 300 && resp.Header.Get(api.HeaderInstance) == "" {
				return &exitError{code: 1, msg: client.ErrorFrom(resp).Error()}
			}
			if err := copyFlushing(cmd.OutOrStdout(), resp.Body); err != nil {
				return err
			}
			if resp.StatusCode >= 300 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "path", "", "path on the instance, e.g. /predict")
	f.StringVarP(&data, "data", "d", "", "request body: inline, @file, or @- for stdin")
	f.StringVarP(&method, "request", "X", "", "HTTP method (default POST with --data, else GET)")
	f.StringArrayVarP(&headers, "header", "H", nil, "extra request header 'Name: value' (repeatable)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print Ember's response headers to stderr")
	return cmd
}

// copyFlushing copies line by line so streamed output appears as it comes.
func copyFlushing(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return werr
			}
			if f, ok := w.(interface{ Sync() error }); ok {
				_ = f.Sync()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// oneLine fits s on one table line of at most n runes ("-" when empty).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printApplied reports a create-or-update (deploy, route apply).
func printApplied(cmd *cobra.Command, g *globals, res any, kind, name string, created bool, version int64) error {
	if g.json {
		return printJSON(cmd.OutOrStdout(), res)
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s (version %d)\n", kind, name, verb, version)
	return nil
}

// seedTerms maps measured phases onto the usual cold-start formula
// (container init + runtime + dependencies + model load), plus the first
// inference and Ember's readiness signal.
var seedTerms = []struct {
	term   string
	phases []string
}{
	{"process start (container init)", []string{"pool_acquired", "spawned", "listening"}},
	{"runtime + dependencies ready", []string{"runtime_loaded", "load_requested"}},
	{"model loaded (read + sessions)", []string{"model_read", "sessions_created"}},
	{"first inference (warm-up)", []string{"warmup_done"}},
	{"ready signal seen by Ember", []string{"ready"}},
}

// coldStartTable prints the latest instance's cold start as the formula's
// terms, for runtimes that report finer phases than the process runtime.
func coldStartTable(w io.Writer, ins []api.Instance) {
	var latest *api.Instance
	for i := range ins {
		in := &ins[i]
		if _, fine := in.Phases["sessions_created"]; fine && (latest == nil || in.StartedAt.After(latest.StartedAt)) {
			latest = in
		}
	}
	if latest == nil {
		return
	}
	fmt.Fprintf(w, "\nCold start of %s, measured (ms):\n", latest.ID)
	total := 0.0
	for _, t := range seedTerms {
		sum, seen := 0.0, false
		for _, ph := range t.phases {
			if v, ok := latest.Phases[ph]; ok {
				sum, seen = sum+v, true
			}
		}
		if !seen {
			continue
		}
		total += sum
		fmt.Fprintf(w, "  %-34s %8.1f\n", t.term, sum)
	}
	fmt.Fprintf(w, "  %-34s %8.1f\n", "total", total)
}

// describeInputs prints a function's declared inputs (a JSON Schema
// object, e.g. a Cog model's Input), one per line in x-order:
// "prompt  string, required  Text to echo".
func describeInputs(w io.Writer, schema json.RawMessage) {
	var sch struct {
		Properties map[string]struct {
			Type        string   `json:"type"`
			Format      string   `json:"format"`
			Enum        []any    `json:"enum"`
			Default     any      `json:"default"`
			Minimum     *float64 `json:"minimum"`
			Maximum     *float64 `json:"maximum"`
			Description string   `json:"description"`
			Order       *float64 `json:"x-order"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if json.Unmarshal(schema, &sch) != nil || len(sch.Properties) == 0 {
		return
	}
	names := slices.Collect(maps.Keys(sch.Properties))
	slices.SortFunc(names, func(a, b string) int {
		oa, ob := sch.Properties[a].Order, sch.Properties[b].Order
		if oa != nil && ob != nil && *oa != *ob {
			return cmp.Compare(*oa, *ob)
		}
		return cmp.Compare(a, b)
	})
	fmt.Fprintln(w, "\nInputs (from the image's schema):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		p := sch.Properties[n]
		typ := cmp.Or(p.Type, "any")
		if p.Format != "" {
			typ += " (" + p.Format + ")"
		}
		var notes []string
		if slices.Contains(sch.Required, n) {
			notes = append(notes, "required")
		} else if p.Default != nil {
			d, _ := json.Marshal(p.Default)
			notes = append(notes, "default "+string(d))
		}
		if len(p.Enum) > 0 {
			e, _ := json.Marshal(p.Enum)
			notes = append(notes, "one of "+string(e))
		}
		if p.Minimum != nil || p.Maximum != nil {
			lo, hi := "", ""
			if p.Minimum != nil {
				lo = strconv.FormatFloat(*p.Minimum, 'g', -1, 64)
			}
			if p.Maximum != nil {
				hi = strconv.FormatFloat(*p.Maximum, 'g', -1, 64)
			}
			notes = append(notes, "in ["+lo+", "+hi+"]")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n, typ, strings.Join(notes, ", "), p.Description)
	}
	tw.Flush()
}

// slotHeaders renders what an invocation's response says about its slot,
// each header that is present as "  Name: value". A warm call that found
// a free slot has no Ember-Cold-Start or Server-Timing.
func slotHeaders(h http.Header) string {
	var b strings.Builder
	for _, k := range []string{api.HeaderColdStart, api.HeaderInstance, api.HeaderQueueMs, api.HeaderServerTiming} {
		if v := h.Get(k); v != "" {
			fmt.Fprintf(&b, "  %s: %s", k, v)
		}
	}
	return b.String()
}
