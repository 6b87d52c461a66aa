package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/cost"
)

func runCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCostJSON(t *testing.T) {
	out, err := runCmd(t, newCostCmd(), "--requests-per-day", "1000", "--seconds-per-request", "5", "--hardware", "a100-40gb", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got struct {
		Options []struct {
			Name        string  `json:"name"`
			MonthlyUSD  float64 `json:"monthly_usd"`
			Utilization float64 `json:"utilization"`
		} `json:"options"`
		Crossovers []struct {
			A, B           string
			RequestsPerDay float64 `json:"requests_per_day"`
		} `json:"crossovers"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Errorf("more than one JSON value in output")
	}
	byName := map[string]float64{}
	for _, o := range got.Options {
		byName[o.Name] = o.MonthlyUSD
	}
	if v := byName["always-on aws-p4d.24xlarge (fixed)"]; v != 23040 {
		t.Errorf("p4d monthly = %v, want 23040", v)
	}
	if v := byName["serverless replicate-like-a100-40gb"]; v < 344.99 || v > 345.01 {
		t.Errorf("replicate-like monthly = %v, want 345", v)
	}
	if len(got.Crossovers) == 0 {
		t.Errorf("no crossovers")
	}
}

func TestCostTableAndCSV(t *testing.T) {
	out, err := runCmd(t, newCostCmd(), "--requests-per-day", "1000", "--seconds-per-request", "5", "--idle-timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OPTION", "MONTHLY USD", "$23,040.00", "CROSSOVERS", "idle timeout 30s", "back-of-envelope: at 100,000 requests/day"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out, err = runCmd(t, newCostCmd(), "--requests-per-day", "1000", "--seconds-per-request", "5", "--csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "requests_per_day,") || len(lines) != 42 {
		t.Errorf("csv: header %q, %d lines; want requests_per_day header and 41 rows", lines[0], len(lines))
	}
}

func TestCostTraceAndPrices(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.txt")
	var b strings.Builder
	for i := range 200 {
		b.WriteString(strconv.Itoa(1700000000+i*30) + ",2\n")
	}
	if err := os.WriteFile(trace, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	prices := filepath.Join(dir, "prices.yaml")
	if err := os.WriteFile(prices, []byte("offers:\n  - {id: ember-a100-40gb, provider: lab, kind: hosted, hardware: a100-40gb, gpus_per_unit: 1, price_per_second: 0.002, billing: {billed_states: [busy]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, newCostCmd(), "--trace", trace, "--engine", "simulate", "--prices", prices, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res struct {
		Options []struct {
			Name       string  `json:"name"`
			MonthlyUSD float64 `json:"monthly_usd"`
		} `json:"options"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	// 200 requests of 2 s over 5,970 s: 2,880 requests/day, busy-only at $0.002/s.
	want := 200.0 / 5970 * 86400 * 30 * 2 * 0.002
	for _, o := range res.Options {
		if o.Name == "ember serverless ember-a100-40gb" && (o.MonthlyUSD < want*0.97 || o.MonthlyUSD > want*1.03) {
			t.Errorf("ember busy-only from trace = %.2f, want ~%.2f", o.MonthlyUSD, want)
		}
	}

	out, err = runCmd(t, newPricesCmd(), "--prices", prices)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"aws-p4d.24xlarge", "32.0000", "ember-cpu", "0.0020000"} {
		if !strings.Contains(out, want) {
			t.Errorf("prices lacks %q:\n%s", want, out)
		}
	}
}

func TestCostErrors(t *testing.T) {
	tests := []struct {
		name string
		cmd  func() *cobra.Command
		args []string
		want string
	}{
		{"no seconds", newCostCmd, []string{"--requests-per-day", "10"}, "--seconds-per-request"},
		{"unknown hardware", newCostCmd, []string{"--requests-per-day", "10", "--seconds-per-request", "1", "--hardware", "tpu"}, "no offer for hardware"},
		{"missing trace", newCostCmd, []string{"--trace", "/nonexistent/x.csv", "--seconds-per-request", "1"}, "--trace"},
		{"policy without trace", newCostCmd, []string{"--policy", "auto"}, "--policy needs --trace"},
		{"bad policy", newCostCmd, []string{"--trace", "x", "--policy", "auto,fixed:soon"}, `--policy: policy "fixed:soon": want auto or fixed:DURATION`},
		{"bad format", newCostCmd, []string{"--trace", "testdata/kw2021.csv", "--policy", "auto", "--trace-format", "azure2020"}, `--trace-format "azure2020"`},
		{"missing policy trace", newCostCmd, []string{"--trace", "/nonexistent/x.csv", "--policy", "auto"}, "--trace: open /nonexistent/x.csv"},
		{"malformed line", newCostCmd, []string{"--trace", "testdata/kw2021-bad.csv", "--policy", "auto"}, "line 3"},
		{"worth beyond a day", newCostCmd, []string{"--trace", "testdata/kw2021.csv", "--policy", "auto", "--cold-start-worth", "25h"}, "--cold-start-worth: want a duration in (0, 24h0m0s], got 25h0m0s"},
		{"bad arrivals", newCostCmd, []string{"--trace", "testdata/kw2021.csv", "--policy", "auto", "--arrivals", "spread"}, `--arrivals "spread": want uniform`},
		{"wrong format forced", newCostCmd, []string{"--trace", "testdata/kw2021.csv", "--policy", "auto", "--trace-format", "azure2019"}, "want the 2019 header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCmd(t, tt.cmd(), tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestAdviseParams(t *testing.T) {
	out, err := runCmd(t, newAdviseCmd(&globals{}), "--requests-per-day", "1000", "--seconds-per-request", "5", "--latency-budget", "50ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Recommendations []struct {
			Rule   string         `json:"rule"`
			Mode   string         `json:"mode"`
			Change map[string]any `json:"change"`
		} `json:"recommendations"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.Recommendations) != 1 || got.Recommendations[0].Mode != "provisioned-warm" || got.Recommendations[0].Change["scaling.min"] != 1.0 {
		t.Errorf("recommendations = %+v, want one provisioned-warm with scaling.min 1", got.Recommendations)
	}
}

func TestCostKeepWarmPolicies(t *testing.T) {
	out, err := runCmd(t, newCostCmd(), "--trace", "testdata/kw2021.csv", "--policy", "auto,fixed:10m", "--policy", "fixed:0s", "--cold-start", "2s", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Functions int                 `json:"functions"`
		Policies  []cost.PolicyResult `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Functions != 2 || len(got.Policies) != 3 {
		t.Fatalf("functions %d, policies %d, want 2 and 3:\n%s", got.Functions, len(got.Policies), out)
	}
	byName := map[string]cost.PolicyResult{}
	for _, p := range got.Policies {
		byName[p.Policy] = p
		if p.Requests != 8 {
			t.Errorf("%s: %v requests, want 8", p.Policy, p.Requests)
		}
	}
	// Scale to zero at once: every call cold, idle at most until the
	// controller's next tick (1 s) per call; 10 min keeps the calls a
	// minute apart warm.
	if z := byName["fixed:0s"]; z.ColdStart != 8 || z.IdleSeconds > 8 {
		t.Errorf("fixed:0s: %v cold, %v idle; want 8 and ≤ 8", z.ColdStart, z.IdleSeconds)
	}
	if f := byName["fixed:10m"]; f.ColdStart != 2 {
		t.Errorf("fixed:10m: %v cold, want 2 (one per function)", f.ColdStart)
	}
}
