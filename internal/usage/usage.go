// Package usage serves GET /v1/usage (metered usage priced, with the
// cheaper alternatives) and the Ember-Cost-USD header on invocations: the
// part of the API that reads metering and the price catalogue, so that the
// gateway imports neither.
package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/problem"
	"github.com/ember-run/ember/internal/spec"
)

// Source reads metered usage (metering.Meter).
type Source interface {
	Usage(ctx context.Context, q metering.Query, now time.Time) ([]metering.Bucket, error)
	Budget(fn string, now time.Time) metering.BudgetStatus
}

// SpecSource finds a deployed function's spec (instance manager).
type SpecSource interface {
	Function(name string) (*spec.Function, bool)
}

// Deployed is what a SpecSource may also tell: since when a function has
// existed. Always-on alternatives are then priced over the part of the
// window the function existed, so a function deployed a minute ago is
// compared with a minute of an always-on fleet, not a day of one.
type Deployed interface {
	DeployedAt(name string) (time.Time, bool)
}

// BudgetReader reports a function's spend today against its budget.
type BudgetReader interface {
	Budget(fn string, now time.Time) *api.BudgetStatus
}

// Handler serves GET /v1/usage.
type Handler struct {
	src     Source
	budgets BudgetReader
	specs   SpecSource
	cat     *cost.Catalogue
	now     func() time.Time
}

// NewHandler returns the handler; cat prices the alternatives (nil
// for none). Budgets are src's until WithBudgets.
func NewHandler(src Source, specs SpecSource, cat *cost.Catalogue) *Handler {
	return &Handler{src: src, budgets: Budgets{Source: src}, specs: specs, cat: cat, now: time.Now}
}

// WithBudgets has reports read budgets from b: on a gateway, the
// leader's, whose metering sees the instances (the gateway's own meter
// runs none and would say $0 spent). Call before serving.
func (h *Handler) WithBudgets(b BudgetReader) *Handler {
	h.budgets = b
	return h
}

// ServeHTTP answers GET /v1/usage?function=&from=&to=&by=hour|day.
//
// from and to take RFC 3339 times, dates (2006-01-02, UTC) or durations
// meaning that long before now ("24h"); the defaults are the last 24 hours
// up to now.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	rep, err := h.report(r, now)
	if err != nil {
		problem.WriteEmber(w, problem.Classify(err, now))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

// Report is the report ServeHTTP would answer r with (the dashboard's
// cost pages read it in-process, with the viewer's principal in r's
// context).
func (h *Handler) Report(r *http.Request) (*api.UsageReport, error) { return h.report(r, h.now()) }

func (h *Handler) report(r *http.Request, now time.Time) (*api.UsageReport, error) {
	q := r.URL.Query()
	by, err := metering.ParseBy(q.Get("by"))
	if err != nil {
		return nil, badRequest(err.Error(), nil)
	}
	from, to, err := window(q, now)
	if err != nil {
		return nil, err
	}
	fn, p, err := function(r, q)
	if err != nil {
		return nil, err
	}
	buckets, err := h.src.Usage(r.Context(), metering.Query{Function: fn, From: from, To: to, By: by}, now)
	if err != nil {
		return nil, err
	}
	if p != nil {
		var covered []metering.Bucket // a copy: the source's slice is not ours to change
		for _, b := range buckets {
			if p.MayInvoke(b.Function) {
				covered = append(covered, b)
			}
		}
		buckets = covered
	}
	rep := &api.UsageReport{From: from.UTC(), To: to.UTC(), By: by, Functions: []api.FunctionUsage{}}
	// The span always-on alternatives pay for: the asked window, up to now.
	end := to
	if end.After(now) {
		end = now
	}
	span := end.Sub(from).Seconds()

	type key struct{ fn, hw string }
	groups := map[key][]metering.Bucket{}
	var keys []key
	for _, b := range buckets {
		k := key{b.Function, b.Hardware}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], b)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].fn != keys[j].fn {
			return keys[i].fn < keys[j].fn
		}
		return keys[i].hw < keys[j].hw
	})
	var all metering.Bucket
	for _, k := range keys {
		var sum metering.Bucket
		fu := api.FunctionUsage{Function: k.fn, Hardware: k.hw, Periods: []api.UsagePeriod{}}
		for _, b := range groups[k] {
			sum.Merge(b)
			fu.Periods = append(fu.Periods, api.UsagePeriod{Start: b.Start, UsageFigures: figures(b)})
		}
		all.Merge(sum)
		fu.UsageFigures = figures(sum)
		var f *spec.Function
		if h.specs != nil {
			f, _ = h.specs.Function(k.fn)
		}
		fnSpan := span
		if d, ok := h.specs.(Deployed); ok {
			if at, ok := d.DeployedAt(k.fn); ok && at.After(from) && at.Before(end) {
				fnSpan = end.Sub(at).Seconds()
			}
		}
		fu.Alternatives = alternatives(h.cat, k.hw, f, sum, fnSpan)
		if f != nil && f.Budget != nil {
			fu.Budget = h.budgets.Budget(k.fn, now)
		}
		rep.Functions = append(rep.Functions, fu)
	}
	rep.Total = figures(all)
	if h.cat != nil {
		for _, k := range keys {
			if len(h.cat.ForHardware(k.hw)) == 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s: no offer for hardware %q in the price catalogue; its cost is 0", k.fn, k.hw))
			}
		}
	}
	return rep, nil
}

// window reads q's from and to, by default the last 24 hours up to now.
func window(q url.Values, now time.Time) (from, to time.Time, err error) {
	if from, err = parseUsageTime(q.Get("from"), now, now.Add(-24*time.Hour)); err != nil {
		return from, to, badRequest("from: "+err.Error(), nil)
	}
	if to, err = parseUsageTime(q.Get("to"), now, now); err != nil {
		return from, to, badRequest("to: "+err.Error(), nil)
	}
	if !to.After(from) {
		return from, to, badRequest(fmt.Sprintf("to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339)), nil)
	}
	return from, to, nil
}

// function reads q's function ("" for all) and the caller's principal.
// An invoke key sees only the functions it covers: asking for another is
// refused without saying whether it exists, and answers about all leave
// the others out. The routes' right (invoke) guarantees a principal when
// auth is on; none means auth is off.
func function(r *http.Request, q url.Values) (string, *auth.Principal, error) {
	fn := q.Get("function")
	if fn != "" && !spec.ValidName(fn) {
		return "", nil, badRequest(fmt.Sprintf("function: invalid name %q", fn), nil)
	}
	p := auth.FromContext(r.Context())
	if fn != "" && p != nil && !p.MayInvoke(fn) {
		return "", nil, &errkind.Error{Kind: errkind.Forbidden, Code: "function_not_allowed",
			Msg: fmt.Sprintf("API key %q does not cover the function asked for", p.Name)}
	}
	return fn, p, nil
}

// parseUsageTime reads an RFC 3339 time, a date, or a duration before now.
// The stores keep times as Unix nanoseconds, so a time they cannot hold
// (before 1677-09-21 or after 2262-04-11) is refused rather than wrapped
// around.
func parseUsageTime(s string, now, def time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
	}
	if err != nil {
		d, derr := time.ParseDuration(strings.TrimPrefix(s, "-"))
		if derr != nil {
			return time.Time{}, fmt.Errorf("want an RFC 3339 time, a date (2006-01-02) or a duration before now (24h), got %q", s)
		}
		t = now.Add(-d)
	}
	if lo, hi := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64); t.Before(lo) || t.After(hi) {
		return time.Time{}, fmt.Errorf("%q is outside %s – %s", s, lo.UTC().Format(time.DateOnly), hi.UTC().Format(time.DateOnly))
	}
	return t, nil
}

func figures(b metering.Bucket) api.UsageFigures {
	f := api.UsageFigures{
		Seconds:    api.UsageSeconds{Loading: b.Seconds.Loading, Busy: b.Seconds.Busy, Idle: b.Seconds.Idle},
		GPUSeconds: b.GPUSeconds, Starts: b.Starts, Requests: b.Requests, Errors: b.Errors,
		ColdStarts: b.ColdStarts, CostUSD: b.CostUSD,
	}
	if b.Requests > 0 {
		n := float64(b.Requests)
		f.ColdStartShare = float64(b.ColdStarts) / n
		f.MeanDurationMs = 1000 * b.DurationSeconds / n
		f.MeanQueueMs = 1000 * b.QueueSeconds / n
	}
	if t := b.Seconds.Total(); t > 0 {
		f.Utilization = b.Seconds.Busy / t
	}
	return f
}

// alternatives prices the metered usage u of one function on hw under each
// offer in cat, over span seconds. Always-on fleets are sized as package
// cost sizes them: enough instances for the mean busy load at the spec's
// target utilisation (at least one, at least scaling.min), paid for the
// whole span. Per-second offers bill the metered seconds of the states they
// charge, rounding each segment (instance lives, or busy periods for
// active-time offers) by their increments.
func alternatives(cat *cost.Catalogue, hw string, f *spec.Function, u metering.Bucket, span float64) []api.UsageAlternative {
	out := []api.UsageAlternative{}
	if cat == nil || span <= 0 {
		return out
	}
	target, minN, gpi := cost.DefaultTarget, 0, 0.0
	if f != nil {
		target, minN = f.Scaling.Target, f.Scaling.Min
		gpi = float64(f.GPUCount())
	}
	if gpi == 0 && hw != "cpu" {
		gpi = 1
	}
	for _, o := range cat.ForHardware(hw) {
		per := 1.0 // priced units per instance
		if o.GPUsPerUnit > 0 && gpi > 0 {
			per = gpi / float64(o.GPUsPerUnit)
		}
		switch o.Kind {
		case cost.KindAlwaysOn:
			n := max(1, minN, int(math.Ceil(u.Seconds.Busy/span/target-1e-9)))
			units := n
			if o.GPUsPerUnit > 0 && gpi > 0 {
				units = int(math.Ceil(float64(n)*gpi/float64(o.GPUsPerUnit) - 1e-9))
			}
			out = append(out, api.UsageAlternative{
				Name: "always-on " + o.ID, Offer: o.ID, Kind: o.Kind, Units: units,
				BilledSeconds: float64(units) * span,
				CostUSD:       float64(units) * span * o.PerSecond(),
				Note:          fmt.Sprintf("%d instance(s) for the whole %s", n, time.Duration(span*float64(time.Second)).Round(time.Second)),
			})
		default:
			b := o.Billing
			var total float64
			for _, st := range b.BilledStates {
				switch st {
				case cost.StateLoading:
					total += u.Seconds.Loading
				case cost.StateBusy:
					total += u.Seconds.Busy
				case cost.StateIdle:
					total += u.Seconds.Idle
				}
			}
			segments := float64(u.Starts)
			if !b.Bills(cost.StateIdle) {
				segments = float64(u.BusyPeriods)
			}
			billed := b.SecondsApprox(segments, total) * per
			name := "serverless " + o.ID
			if o.Kind == cost.KindHosted {
				name = "ember " + o.ID
			}
			out = append(out, api.UsageAlternative{
				Name: name, Offer: o.ID, Kind: o.Kind,
				BilledSeconds: billed, CostUSD: billed * o.PerSecond(),
				Note: "bills " + strings.Join(b.BilledStates, "+"),
			})
		}
	}
	return out
}

// budgetStatus is the wire form of a function's budget today.
func budgetStatus(st metering.BudgetStatus) *api.BudgetStatus {
	return &api.BudgetStatus{Day: st.Day, SpentUSD: st.SpentUSD, GPUSeconds: st.GPUSeconds,
		USDPerDay: st.USDPerDay, GPUSecondsPerDay: st.GPUSecondsPerDay, Action: st.Action, Over: st.Over}
}

// Budgets adapts a metering source to the gateway's view of budgets: a
// function's spend today against its budget, in api terms.
type Budgets struct{ Source BudgetSource }

// BudgetSource reports functions' spend against their budgets (metering).
type BudgetSource interface {
	Budget(fn string, now time.Time) metering.BudgetStatus
}

// Budget is fn's budget status at now.
func (b Budgets) Budget(fn string, now time.Time) *api.BudgetStatus {
	return budgetStatus(b.Source.Budget(fn, now))
}

func badRequest(msg string, err error) error {
	return &errkind.Error{Kind: errkind.Invalid, Code: "bad_request", Msg: msg, Err: err}
}
