package dashboard

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/ember-run/ember/internal/cost"
)

// modelForm is the cost model's editable inputs, read from the query (a
// GET form: it changes nothing on the server, so it needs no CSRF token).
type modelForm struct {
	RequestsPerDay, SecondsPerRequest float64
	Hardware                          string
	IdleTimeout                       time.Duration
}

// Bounds of the form's fields; beyond them the page names the field.
const (
	maxFormRPD  = 1e8
	maxFormSPR  = 3600
	maxFormIdle = 24 * time.Hour
)

func parseModelForm(q url.Values, hardware []string) (modelForm, error) {
	f := modelForm{RequestsPerDay: 10_000, SecondsPerRequest: 1, Hardware: "a100-40gb", IdleTimeout: 120 * time.Second}
	if len(hardware) > 0 && !slices.Contains(hardware, f.Hardware) {
		f.Hardware = hardware[0]
	}
	num := func(field string, lo, hi float64, dst *float64) error {
		s := q.Get(field)
		if s == "" {
			return nil
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || v < lo || v > hi {
			return fmt.Errorf("%s: a number from %g to %g (got %q)", field, lo, hi, truncate(s, 40))
		}
		*dst = v
		return nil
	}
	if err := num("requests_per_day", 1, maxFormRPD, &f.RequestsPerDay); err != nil {
		return f, err
	}
	if err := num("seconds_per_request", 0.001, maxFormSPR, &f.SecondsPerRequest); err != nil {
		return f, err
	}
	idle := f.IdleTimeout.Seconds()
	if err := num("idle_timeout_s", 1, maxFormIdle.Seconds(), &idle); err != nil {
		return f, err
	}
	f.IdleTimeout = time.Duration(idle * float64(time.Second))
	if hw := q.Get("hardware"); hw != "" {
		if !slices.Contains(hardware, hw) {
			return f, fmt.Errorf("hardware: one of the catalogue's classes (got %q)", truncate(hw, 40))
		}
		f.Hardware = hw
	}
	return f, nil
}

func (d *Dashboard) hardware() []string {
	var out []string
	if d.opts.Catalogue == nil {
		return out
	}
	for _, o := range d.opts.Catalogue.Offers {
		if !slices.Contains(out, o.Hardware) {
			out = append(out, o.Hardware)
		}
	}
	slices.Sort(out)
	return out
}

func (d *Dashboard) costPage(w http.ResponseWriter, r *http.Request, v viewer) {
	var b buf
	b.f(`%s%s`, d.meteredSection(r, v), d.modelSection(r.URL.Query()))
	d.page(w, v, "Cost", "cost", "", b.safe())
}

// meteredSection is what the last seven days cost, by day and state, and
// what the same traffic would have cost always-on and on hosted offers.
func (d *Dashboard) meteredSection(r *http.Request, v viewer) safe {
	var b buf
	b.f(`<section><h2>Metered, last 7 days</h2>`)
	if d.opts.Usage == nil {
		b.f(`<p class="empty">Metering is off.</p></section>`)
		return b.safe()
	}
	rep, err := d.usage(r, v, "day", d.now().UTC().Truncate(24*time.Hour).Add(-6*24*time.Hour))
	if err != nil {
		b.f(`<p class="error">%s</p></section>`, err)
		return b.safe()
	}
	if len(rep.Functions) == 0 {
		b.f(`<p class="empty">Nothing metered yet.</p></section>`)
		return b.safe()
	}
	for _, f := range rep.Functions {
		var days []bar
		for _, p := range f.Periods {
			days = append(days, bar{Label: p.Start.UTC().Format("2006-01-02"), Parts: byState(p.CostUSD, p.Seconds.Loading, p.Seconds.Busy, p.Seconds.Idle)})
		}
		alts := []bar{{Label: "Ember (metered)", Parts: []float64{0, f.CostUSD}}}
		for _, a := range f.Alternatives {
			alts = append(alts, bar{Label: truncate(a.Name, 34), Parts: []float64{0, 0, 0, a.CostUSD}})
		}
		b.f(`<h3>%s <small>%s · %d requests · %d cold starts</small></h3>%s<ul class="legend"><li><span class="key p0"></span>loading</li><li><span class="key p1"></span>busy</li><li><span class="key p2"></span>idle</li></ul><h4>The same traffic elsewhere</h4>%s`,
			f.Function, f.Hardware, f.Requests, f.ColdStarts, bars("cost per day by state", days, usd), bars("what the same traffic costs elsewhere", alts, usd))
	}
	for _, n := range rep.Notes {
		b.f(`<p class="hint">%s</p>`, n)
	}
	b.f(`</section>`)
	return b.safe()
}

// byState splits a cost in proportion to the seconds in each state.
func byState(total, loading, busy, idle float64) []float64 {
	s := loading + busy + idle
	if s == 0 {
		return []float64{0, 0, 0}
	}
	return []float64{total * loading / s, total * busy / s, total * idle / s}
}

// modelSection is the seed's cost table as a chart: monthly cost against
// requests/day for each option, crossovers marked, recomputed by
// internal/cost from the form's inputs.
func (d *Dashboard) modelSection(q url.Values) safe {
	var b buf
	b.f(`<section><h2>Cost model</h2>`)
	hw := d.hardware()
	if d.opts.Catalogue == nil || len(hw) == 0 {
		b.f(`<p class="empty">No price catalogue.</p></section>`)
		return b.safe()
	}
	f, ferr := parseModelForm(q, hw)
	b.f(`<form class="model" method="get" action="/ui/cost"><label>requests/day <input id="rpd" name="requests_per_day" type="number" min="1" max="%g" step="any" value="%g"></label>`+
		`<label>seconds/request <input id="spr" name="seconds_per_request" type="number" min="0.001" max="%d" step="any" value="%g"></label><label>hardware <select name="hardware">`,
		maxFormRPD, f.RequestsPerDay, maxFormSPR, f.SecondsPerRequest)
	for _, h := range hw {
		sel := ""
		if h == f.Hardware {
			sel = " selected"
		}
		b.f(`<option%s>%s</option>`, safe(sel), h)
	}
	b.f(`</select></label><label>idle timeout (s) <input name="idle_timeout_s" type="number" min="1" max="%d" step="any" value="%g"></label><button id="recompute">recompute</button></form>`,
		int(maxFormIdle.Seconds()), f.IdleTimeout.Seconds())
	if ferr != nil {
		b.f(`<p class="error" role="alert">%s</p></section>`, ferr)
		return b.safe()
	}
	in := cost.Inputs{RequestsPerDay: f.RequestsPerDay, SecondsPerRequest: f.SecondsPerRequest, Hardware: f.Hardware, IdleTimeout: f.IdleTimeout}
	res, err := cost.Estimate(in, d.opts.Catalogue, cost.EngineAnalytic)
	if err != nil {
		b.f(`<p class="error" role="alert">%s</p></section>`, err)
		return b.safe()
	}
	names, rows := cost.Sweep(in, d.opts.Catalogue, cost.LogLevels(10, 1e7, 49))
	ss := make([]series, len(names))
	for i, n := range names {
		ss[i].Name = n
		for _, row := range rows {
			ss[i].X = append(ss[i].X, row.RequestsPerDay)
			ss[i].Y = append(ss[i].Y, row.MonthlyUSD[i])
		}
	}
	var marks []mark
	for _, c := range res.Crossovers {
		if c.Found && c.RequestsPerDay >= 10 {
			marks = append(marks, mark{X: c.RequestsPerDay, Y: c.MonthlyUSD,
				Label: fmt.Sprintf("%s = %s at %s requests/day (%s/month)", c.A, c.B, shortNum(c.RequestsPerDay), usd(c.MonthlyUSD))})
		}
	}
	marks = append(marks, mark{X: f.RequestsPerDay, Y: nan(), Label: "your traffic"})
	b.f(`<div id="model-chart">%s</div><table class="list" id="model-table"><thead><tr><th>option at %s requests/day</th><th>monthly</th><th>utilization</th></tr></thead><tbody>`,
		lineChart{Title: "monthly cost (USD) against requests/day", LogX: true, LogY: true, Series: ss, Marks: marks}.svg(), shortNum(f.RequestsPerDay))
	for _, o := range res.Options {
		b.f(`<tr><td>%s</td><td>%s</td><td>%.0f%%</td></tr>`, o.Name, usd(o.MonthlyUSD), o.Utilization*100)
	}
	b.f(`</tbody></table><h3>Crossovers</h3><ul class="switches">`)
	for _, m := range marks[:len(marks)-1] {
		b.f(`<li>%s</li>`, m.Label)
	}
	b.f(`</ul></section>`)
	return b.safe()
}

func nan() float64 { return math.NaN() }
