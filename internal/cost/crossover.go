package cost

import (
	"math"
)

// Crossover is the requests/day at which two options cost the same.
type Crossover struct {
	A string `json:"a"`
	B string `json:"b"`
	// RequestsPerDay where A and B cost the same; 0 when Found is false.
	RequestsPerDay float64 `json:"requests_per_day"`
	// MonthlyUSD is what each costs there.
	MonthlyUSD float64 `json:"monthly_usd"`
	Found      bool    `json:"found"`
	// Below says which of the two is cheaper below the crossover.
	Below string `json:"cheaper_below,omitempty"`
}

// Crossover search range, requests/day.
const (
	crossLo = 1.0
	crossHi = 1e7
)

// SweepRow is every option's monthly cost at one traffic level.
type SweepRow struct {
	RequestsPerDay float64   `json:"requests_per_day"`
	MonthlyUSD     []float64 `json:"monthly_usd"` // in the order of Sweep's names
}

// SeedLevels are the seed's crossover table rows, requests/day.
var SeedLevels = []float64{100, 1_000, 10_000, 50_000, 100_000, 500_000}

// Sweep prices every option at each traffic level with the closed forms,
// the other inputs held. It returns the option names and one row per level.
func Sweep(in Inputs, cat *Catalogue, levels []float64) ([]string, []SweepRow) {
	in = in.withDefaults()
	in.Trace = nil
	var names []string
	var rows []SweepRow
	for i, rd := range levels {
		in.RequestsPerDay = rd
		opts := price(in, cat, analytic(in))
		row := SweepRow{RequestsPerDay: rd}
		for _, o := range opts {
			if i == 0 {
				names = append(names, o.Name)
			}
			row.MonthlyUSD = append(row.MonthlyUSD, o.MonthlyUSD)
		}
		rows = append(rows, row)
	}
	return names, rows
}

// LogLevels returns n traffic levels evenly spaced in log from lo to hi.
func LogLevels(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	for i := range n {
		f := float64(i) / float64(max(n-1, 1))
		out[i] = math.Round(math.Exp(math.Log(lo) + f*(math.Log(hi)-math.Log(lo))))
	}
	return out
}

// Crossovers finds, for each pair of options, the lowest requests/day
// between 1 and 10^7 at which their monthly costs cross, by scanning a log
// grid for a sign change of the difference and bisecting it. Always-on
// costs step with whole units, so a crossing may sit on a step.
func Crossovers(in Inputs, cat *Catalogue) []Crossover {
	in = in.withDefaults()
	in.Trace = nil
	costs := func(rd float64) []Option {
		in.RequestsPerDay = rd
		return price(in, cat, analytic(in))
	}
	const grid = 160
	levels := make([]float64, grid)
	table := make([][]Option, grid)
	for i := range grid {
		levels[i] = math.Exp(math.Log(crossLo) + float64(i)/float64(grid-1)*(math.Log(crossHi)-math.Log(crossLo)))
		table[i] = costs(levels[i])
	}
	n := len(table[0])
	var out []Crossover
	for a := range n {
		for b := a + 1; b < n; b++ {
			c := Crossover{A: table[0][a].Name, B: table[0][b].Name}
			diff := func(opts []Option) float64 { return opts[a].MonthlyUSD - opts[b].MonthlyUSD }
			for i := 1; i < grid; i++ {
				d0, d1 := diff(table[i-1]), diff(table[i])
				if d0 == 0 || (d0 < 0) == (d1 < 0) {
					continue
				}
				lo, hi := levels[i-1], levels[i]
				for range 60 {
					mid := math.Sqrt(lo * hi)
					if (diff(costs(mid)) < 0) == (d0 < 0) {
						lo = mid
					} else {
						hi = mid
					}
				}
				opts := costs(hi)
				c.Found, c.RequestsPerDay = true, math.Round(hi)
				c.MonthlyUSD = (opts[a].MonthlyUSD + opts[b].MonthlyUSD) / 2
				c.Below = c.A
				if d0 > 0 {
					c.Below = c.B
				}
				break
			}
			out = append(out, c)
		}
	}
	return out
}
