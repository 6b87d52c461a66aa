package cost

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// The seed document's own figures, kept to show where Ember agrees and
// where it does not.
const (
	seedColdStartGuessUSD = 50     // "+$50 cold start": a guess
	seedServerless100kUSD = 20_000 // its serverless figure at 100,000/day
	seedAlwaysOnUSD       = 23_040 // p4d.24xlarge × 720 h
)

// SeedNotes states plainly where the seed's cost figures are inconsistent.
func SeedNotes() []string {
	return []string{
		fmt.Sprintf("back-of-envelope: at 100,000 requests/day the usual serverless figure (%s) is still below always-on (%s), yet the usual advice is always-on there", usd(seedServerless100kUSD), usd(seedAlwaysOnUSD)),
		"back-of-envelope: a p4d.24xlarge holds 8 A100s while 1,000 × 5 s/day keeps a fraction of one busy (5.8% of one GPU, 0.72% of the box)",
		fmt.Sprintf("back-of-envelope: its \"+$%d cold start\" is a guess; Ember computes loading and keep-warm idle seconds from the idle timeout and cold-start time instead", seedColdStartGuessUSD),
	}
}

// WriteTable writes res as a readable table.
func WriteTable(w io.Writer, res *Result) error {
	in := res.Inputs
	fmt.Fprintf(w, "%.0f requests/day × %gs on %s, concurrency %d, idle timeout %s, min %d, cold start %s, %s arrivals (engine %s)\n\n",
		in.RequestsPerDay, in.SecondsPerRequest, in.Hardware, in.Concurrency, in.IdleTimeout, in.Min, in.ColdStart, in.Shape, res.Usage.Engine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "OPTION\tMONTHLY USD\tUTILIZATION\tLOADING S\tBUSY S\tIDLE S\tBILLED S\tSAVINGS\t")
	for _, o := range res.Options {
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f%%\t\n", o.Name, usd(o.MonthlyUSD), 100*o.Utilization,
			o.Seconds.Loading, o.Seconds.Busy, o.Seconds.Idle, o.BilledSeconds, 100*o.Savings)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsavings are against %s; cold-start rate %.1f%%\n", res.Reference, 100*res.Usage.ColdStartRate)
	fmt.Fprintln(w, "\nCROSSOVERS (requests/day where two options cost the same)")
	if err := writeCrossovers(w, res.Crossovers); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nNOTES")
	for _, n := range res.Notes {
		fmt.Fprintln(w, "- "+n)
	}
	return nil
}

func writeCrossovers(w io.Writer, cs []Crossover) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "A\tB\tREQUESTS/DAY\tMONTHLY USD\tCHEAPER BELOW")
	for _, c := range cs {
		if !c.Found {
			fmt.Fprintf(tw, "%s\t%s\tnone in 1..10^7\t-\t-\n", c.A, c.B)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\n", c.A, c.B, c.RequestsPerDay, usd(c.MonthlyUSD), c.Below)
	}
	return tw.Flush()
}

// WriteSweep writes the cost of every option at each level as a table,
// followed by the crossovers and the seed's inconsistencies.
func WriteSweep(w io.Writer, names []string, rows []SweepRow, cs []Crossover) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "REQUESTS/DAY\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw, "CHEAPEST\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%.0f\t", r.RequestsPerDay)
		best := 0
		for i, v := range r.MonthlyUSD {
			fmt.Fprintf(tw, "%s\t", usd(v))
			if v < r.MonthlyUSD[best] {
				best = i
			}
		}
		fmt.Fprintf(tw, "%s\t\n", names[best])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCROSSOVERS")
	if err := writeCrossovers(w, cs); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nNOTES")
	for _, n := range SeedNotes() {
		fmt.Fprintln(w, "- "+n)
	}
	return nil
}

// WriteCSV writes chart-ready rows: requests_per_day, then one column of
// monthly USD per option.
func WriteCSV(w io.Writer, names []string, rows []SweepRow) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"requests_per_day"}, names...)); err != nil {
		return err
	}
	for _, r := range rows {
		rec := []string{strconv.FormatFloat(r.RequestsPerDay, 'f', 0, 64)}
		for _, v := range r.MonthlyUSD {
			rec = append(rec, strconv.FormatFloat(v, 'f', 2, 64))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// usd formats dollars with thousands separators: 23040 → "$23,040.00".
func usd(v float64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	intPart, frac := s[:len(s)-3], s[len(s)-3:]
	var out []byte
	for i, c := range []byte(intPart) {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-$" + string(out) + frac
	}
	return "$" + string(out) + frac
}
