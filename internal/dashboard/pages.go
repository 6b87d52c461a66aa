package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

// page writes the frame around body: the nav, the signed-in key with its
// sign-out form (CSRF token), and data-events, the page's one SSE stream.
func (d *Dashboard) page(w http.ResponseWriter, v viewer, title, active, events string, body safe) {
	var b buf
	b.f(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`+
		`<title>%s · Ember</title><link rel="stylesheet" href="/ui/assets/ui.css"><link rel="icon" href="data:,"><script src="/ui/assets/ui.js" defer></script></head>`+
		`<body data-events="%s"><header><a class="brand" href="/ui/">ember</a><nav>`, title, events)
	for _, n := range [][2]string{{"functions", "/ui/"}, {"jobs", "/ui/jobs"}, {"routes", "/ui/routes"}, {"cost", "/ui/cost"}} {
		cls := ""
		if n[0] == active {
			cls = ` class="on"`
		}
		b.f(`<a href="%s"%s>%s</a>`, n[1], safe(cls), n[0])
	}
	b.f(`</nav>`)
	if v.ss != nil {
		b.f(`<form class="who" method="post" action="/ui/signout"><span>%s</span><input type="hidden" name="csrf" value="%s"><button>sign out</button></form>`,
			v.ss.name+roleOf(v), v.csrf())
	}
	b.f(`</header><main><h1>%s</h1>%s</main></body></html>`, title, body)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(b.String()))
}

func roleOf(v viewer) string {
	if v.admin() {
		return " (admin)"
	}
	return " (invoke, read-only)"
}

func (d *Dashboard) signinForm(w http.ResponseWriter, r *http.Request) {
	var b buf
	if m := r.URL.Query().Get("m"); m != "" {
		b.f(`<p class="error" role="alert">%s</p>`, truncate(m, 200))
	}
	b.f(`<form class="signin" method="post" action="/ui/signin"><label>API key <input type="password" name="key" autocomplete="current-password" maxlength="%d" required autofocus></label><button>sign in</button></form>`+
		`<p class="hint">The key stays on the server; the browser gets a session cookie. <code>ember keys create --scope invoke</code> makes a read-only one.</p>`, maxKeyBytes)
	d.page(w, viewer{}, "Sign in", "", "", b.safe())
}

// --- functions ---

func (d *Dashboard) functionsPage(w http.ResponseWriter, r *http.Request, v viewer) {
	d.page(w, v, "Functions", "functions", "/ui/events?page=functions", d.live("fns", d.functionsFragment(r, v)))
}

func (d *Dashboard) live(id string, content safe) safe {
	var b buf
	b.f(`<div data-live="%s">%s</div>`, id, content)
	return b.safe()
}

// today is the usage of the viewer's functions since midnight UTC.
func (d *Dashboard) today(r *http.Request, v viewer) map[string]api.FunctionUsage {
	out := map[string]api.FunctionUsage{}
	if d.opts.Usage == nil {
		return out
	}
	day := d.now().UTC().Truncate(24 * time.Hour)
	rep, err := d.usage(r, v, "day", day)
	if err != nil {
		return out
	}
	for _, f := range rep.Functions {
		g := out[f.Function]
		g.CostUSD += f.CostUSD
		g.ColdStarts += f.ColdStarts
		g.Requests += f.Requests
		out[f.Function] = g
	}
	return out
}

func (d *Dashboard) usage(r *http.Request, v viewer, by string, from time.Time) (*api.UsageReport, error) {
	q := url.Values{"by": {by}, "from": {from.Format(time.RFC3339)}}
	req, err := http.NewRequestWithContext(v.ctx(r.Context()), http.MethodGet, "/v1/usage?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return d.opts.Usage.Report(req)
}

func (d *Dashboard) visibleFunctions(v viewer) []api.Function {
	var out []api.Function
	for _, f := range d.opts.Functions.List() {
		if v.may(f.Name) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b api.Function) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (d *Dashboard) functionsFragment(r *http.Request, v viewer) safe {
	now := d.now()
	fns := d.visibleFunctions(v)
	if len(fns) == 0 {
		return `<p class="empty">No functions deployed. <code>ember deploy fn.yaml</code> adds one.</p>`
	}
	today := d.today(r, v)
	var b buf
	b.f(`<table class="list"><thead><tr><th>function</th><th>state</th><th>instances</th><th>req/s</th><th>p50</th><th>p99</th><th>cold starts today</th><th>cost today</th><th>version</th></tr></thead><tbody>`)
	for _, f := range fns {
		st, _ := d.opts.Instances.Status(f.Name, now)
		h := d.rec.function(f.Name, now)
		rps := 0.0
		if n := len(h.Samples); n > 0 {
			rps = h.Samples[n-1].RPS
		}
		u := today[f.Name]
		b.f(`<tr><td><a href="/ui/functions/%s">%s</a></td><td><span class="state %s">%s</span></td><td>%d ready · %d starting</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>v%d · %s</td></tr>`,
			url.PathEscape(f.Name), f.Name, stateClass(st.State), st.State, st.Ready, st.Starting, fmt.Sprintf("%.1f", rps),
			ms(h.P50), ms(h.P99), u.ColdStarts, usd(u.CostUSD), f.Version, ago(now, f.UpdatedAt))
	}
	b.f(`</tbody></table>`)
	return b.safe()
}

func stateClass(s string) string { return strings.ReplaceAll(s, " ", "-") }

func ms(v float64) string {
	if v == 0 {
		return "–"
	}
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func usd(v float64) string {
	if v != 0 && v < 0.01 {
		return fmt.Sprintf("$%.5f", v)
	}
	return fmt.Sprintf("$%.2f", v)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// --- function detail ---

const timelineSpan = 5 * time.Minute

func (d *Dashboard) functionPage(w http.ResponseWriter, r *http.Request, v viewer) {
	name := r.PathValue("name")
	f, ok := d.opts.Functions.Get(name)
	if !ok || !v.may(name) {
		http.Error(w, fmt.Sprintf("function %q not found", name), http.StatusNotFound)
		return
	}
	var b buf
	b.f(`<p class="sub">%s · runtime %s · v%d</p>`, "function", f.Runtime, f.Version)
	for _, id := range []string{"status", "timeline", "rate", "starts", "logs"} {
		b.f(`%s`, d.live(id, d.functionFragment(id, name)))
	}
	var spec bytes.Buffer
	_ = json.Indent(&spec, f.Spec, "", "  ")
	b.f(`%s`, d.deployHistory(r, name, f))
	b.f(`<section><h2>Spec</h2><pre class="spec">%s</pre></section>`, truncate(spec.String(), 64<<10))
	d.page(w, v, name, "functions", "/ui/events?page=function&name="+url.QueryEscape(name), b.safe())
}

// historyShown bounds the versions a function's page lists.
const historyShown = 20

// deployHistory lists the function's stored versions, newest first, each
// with its spec folded; without a store, the versions seen since start.
func (d *Dashboard) deployHistory(r *http.Request, name string, f api.Function) safe {
	var b buf
	b.f(`<section><h2>Deploy history</h2>`)
	if d.opts.Versions == nil {
		b.f(`<ul class="versions">`)
		for _, ver := range slices.Backward(d.rec.function(name, d.now()).Versions) {
			b.f(`<li>v%d · %s</li>`, ver.Version, ver.At.UTC().Format(time.RFC3339))
		}
		b.f(`<li>created %s</li></ul></section>`, f.CreatedAt.UTC().Format(time.RFC3339))
		return b.safe()
	}
	vs, err := d.opts.Versions.FunctionVersions(r.Context(), name, historyShown)
	if err != nil {
		d.log.Warn("dashboard: read deploy history", "function", name, "err", err)
		b.f(`<p class="error">deploy history unavailable</p></section>`)
		return b.safe()
	}
	b.f(`<table class="list versions"><thead><tr><th>version</th><th>deployed</th><th>by key</th><th>spec</th></tr></thead><tbody>`)
	for _, v := range vs {
		var spec bytes.Buffer
		_ = json.Indent(&spec, v.Spec, "", "  ")
		b.f(`<tr class="version"><td>v%d</td><td>%s</td><td>%s</td><td><details><summary>spec</summary><pre class="spec">%s</pre></details></td></tr>`,
			v.Version, v.DeployedAt.UTC().Format(time.RFC3339), orDash(v.DeployedBy), truncate(spec.String(), 16<<10))
	}
	b.f(`</tbody></table><p class="sub">created %s · the last %d versions are kept</p></section>`, f.CreatedAt.UTC().Format(time.RFC3339), api.FunctionVersionsKept)
	return b.safe()
}

// functionFragment renders one live part of a function's page.
func (d *Dashboard) functionFragment(id, name string) safe {
	now := d.now()
	h := d.rec.function(name, now)
	var b buf
	switch id {
	case "status":
		st, _ := d.opts.Instances.Status(name, now)
		f, _ := d.opts.Functions.Get(name)
		b.f(`<dl class="facts"><div><dt>state</dt><dd><span class="state %s" id="fn-state">%s</span></dd></div><div><dt>instances</dt><dd>%d ready · %d starting · %d desired</dd></div>`+
			`<div><dt>in flight</dt><dd>%d (queued %d)</dd></div><div><dt>p50 / p99 (1 min)</dt><dd>%s / %s</dd></div><div><dt>queue wait</dt><dd>%s</dd></div>`+
			`<div><dt>autoscaler</dt><dd>%s</dd></div>`,
			stateClass(st.State), st.State, st.Ready, st.Starting, f.Status.Desired, st.InFlight, f.Status.Queued,
			ms(h.P50), ms(h.P99), ms(h.QueueMs), orDash(f.Status.Reason))
		if st.LastError != "" {
			b.f(`<div><dt>last error</dt><dd class="error">%s</dd></div>`, st.LastError)
		}
		b.f(`</dl>`)
	case "timeline":
		lo := now.Add(-timelineSpan)
		var lanes []lane
		for _, t := range h.Tracks {
			l := lane{Label: truncate(t.ID, 12)}
			for _, s := range t.Segs {
				to := s.To
				if to.IsZero() {
					to = now
				}
				if to.Before(lo) {
					continue
				}
				l.Segs = append(l.Segs, seg{From: s.From.Sub(now).Seconds(), To: to.Sub(now).Seconds(), State: s.State})
			}
			if len(l.Segs) > 0 {
				lanes = append(lanes, l)
			}
		}
		b.f(`<section><h2>Instances</h2>`)
		if len(lanes) == 0 {
			b.f(`<p class="empty">No instance in the last five minutes: the function is at zero.</p>`)
		} else {
			b.f(`%s<ul class="legend"><li><span class="key st-starting"></span>starting</li><li><span class="key st-busy"></span>busy</li><li><span class="key st-idle"></span>idle (keep-warm)</li><li><span class="key st-stopping"></span>stopping</li></ul>`,
				timeline("instances over the last five minutes", lanes, -timelineSpan.Seconds(), 0, secondsAgo))
		}
		b.f(`</section>`)
	case "rate":
		var x, rps, p50, p99, q []float64
		for _, s := range h.Samples {
			x = append(x, s.At.Sub(now).Seconds())
			rps, p50, p99, q = append(rps, s.RPS), append(p50, s.P50), append(p99, s.P99), append(q, s.QueueMs)
		}
		b.f(`<section><h2>Traffic</h2><div class="charts">%s%s%s</div></section>`,
			lineChart{Title: "requests per second", Y0: true, XFmt: secondsAgo, Series: []series{{"req/s", x, rps}}}.svg(),
			lineChart{Title: "latency (ms)", Y0: true, XFmt: secondsAgo, Series: []series{{"p50 ms", x, p50}, {"p99 ms", x, p99}}}.svg(),
			lineChart{Title: "queue wait (ms, mean)", Y0: true, XFmt: secondsAgo, Series: []series{{"queue ms", x, q}}}.svg())
	case "starts":
		b.f(`<section><h2>Cold starts</h2>`)
		if len(h.ColdStarts) == 0 {
			b.f(`<p class="empty">None recorded since the server started.</p>`)
		}
		for i, cs := range slices.Backward(h.ColdStarts) {
			if i < len(h.ColdStarts)-3 {
				break
			}
			b.f(`<h3>%s · %s</h3>%s`, cs.Instance, ago(now, cs.At), waterfall("cold start phases of "+cs.Instance, cs.Phases))
		}
		b.f(`</section>`)
	case "logs":
		lines, _ := d.opts.Instances.Logs(name, 50)
		b.f(`<section><h2>Logs</h2><pre class="logs">`)
		for _, l := range lines {
			b.f("%s %s\n", truncate(l.Instance, 12), truncate(l.Line, 2000))
		}
		b.f(`</pre></section>`)
	}
	return b.safe()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func secondsAgo(v float64) string {
	if v == 0 {
		return "now"
	}
	return strconv.Itoa(int(v)) + "s"
}

// --- jobs ---

var jobStatuses = []string{"starting", "processing", "succeeded", "failed", "canceled"}

func (d *Dashboard) jobsPage(w http.ResponseWriter, r *http.Request, v viewer) {
	fn, status := r.URL.Query().Get("function"), r.URL.Query().Get("status")
	if len(fn) > 200 {
		http.Error(w, "function: at most 200 bytes", http.StatusBadRequest)
		return
	}
	if status != "" && !slices.Contains(jobStatuses, status) {
		http.Error(w, "status: one of "+strings.Join(jobStatuses, ", "), http.StatusBadRequest)
		return
	}
	var b buf
	b.f(`<form class="filters" method="get" action="/ui/jobs"><label>function <input name="function" value="%s" maxlength="200"></label><label>status <select name="status"><option value="">any</option>`, fn)
	for _, s := range jobStatuses {
		sel := ""
		if s == status {
			sel = " selected"
		}
		b.f(`<option%s>%s</option>`, safe(sel), s)
	}
	b.f(`</select></label><button>filter</button></form>`)
	if d.opts.Jobs == nil {
		b.f(`<p class="empty">Jobs are not enabled on this server.</p>`)
		d.page(w, v, "Jobs", "jobs", "", b.safe())
		return
	}
	pg, err := d.opts.Jobs.List(v.ctx(r.Context()), jobs.ListOptions{Function: fn, Limit: 100})
	if err != nil {
		b.f(`<p class="error">%s</p>`, err)
		d.page(w, v, "Jobs", "jobs", "", b.safe())
		return
	}
	b.f(`<table class="list"><thead><tr><th>id</th><th>function</th><th>status</th><th>created</th><th>total</th><th>attempts</th></tr></thead><tbody>`)
	n := 0
	for _, p := range pg.Predictions {
		if status != "" && p.Status != status {
			continue
		}
		n++
		total := "–"
		if p.Metrics.TotalTime != nil {
			total = fmt.Sprintf("%.2f s", *p.Metrics.TotalTime)
		}
		b.f(`<tr><td><a href="/ui/jobs/%s">%s</a></td><td>%s</td><td><span class="state %s">%s</span></td><td>%s</td><td>%s</td><td>%d</td></tr>`,
			url.PathEscape(p.ID), p.ID, p.Model, p.Status, p.Status, ago(d.now(), p.CreatedAt), total, p.Attempts)
	}
	b.f(`</tbody></table>`)
	if n == 0 {
		b.f(`<p class="empty">No jobs match.</p>`)
	}
	d.page(w, v, "Jobs", "jobs", "", b.safe())
}

func (d *Dashboard) jobPage(w http.ResponseWriter, r *http.Request, v viewer) {
	id := r.PathValue("id")
	if d.opts.Jobs == nil {
		http.NotFound(w, r)
		return
	}
	p, err := d.opts.Jobs.Get(v.ctx(r.Context()), id)
	if err != nil {
		http.Error(w, fmt.Sprintf("job %q not found", truncate(id, 64)), http.StatusNotFound)
		return
	}
	d.page(w, v, "Job "+id, "jobs", "/ui/events?page=job&id="+url.QueryEscape(id), d.live("job", jobFragment(p)))
}

// jobFragmentStreaming is jobFragment while the job runs: the output so
// far is the chunks its stream sent.
func jobFragmentStreaming(p *api.Prediction, chunks string) safe {
	f := string(jobFragment(p))
	return safe(strings.Replace(f, `<pre id="job-output">–</pre>`, `<pre id="job-output">`+string(html.EscapeString(chunks))+`</pre>`, 1))
}

func jobFragment(p *api.Prediction) safe {
	var b buf
	b.f(`<dl class="facts"><div><dt>function</dt><dd>%s</dd></div><div><dt>status</dt><dd><span class="state %s" id="job-status">%s</span></dd></div><div><dt>attempts</dt><dd>%d</dd></div>`,
		p.Model, p.Status, p.Status, p.Attempts)
	if p.Metrics.QueueTime != nil {
		b.f(`<div><dt>queue</dt><dd>%.2f s</dd></div>`, *p.Metrics.QueueTime)
	}
	if p.Metrics.PredictTime != nil {
		b.f(`<div><dt>predict</dt><dd>%.2f s%s</dd></div>`, *p.Metrics.PredictTime, safe(map[bool]string{true: " (cold start)"}[p.Metrics.ColdStart]))
	}
	if p.Webhook != "" {
		b.f(`<div><dt>webhook</dt><dd>%s (events: %s)</dd></div>`, p.Webhook, orDash(strings.Join(p.WebhookEventsFilter, ", ")))
	}
	b.f(`</dl>`)
	if p.Error != nil {
		b.f(`<p class="error">%s</p>`, *p.Error)
	}
	if len(p.WebhookDeliveries) > 0 {
		b.f(`<h2>Webhook deliveries</h2><table class="list deliveries"><thead><tr><th>event</th><th>outcome</th><th>attempts</th><th>last status</th><th>last attempt</th></tr></thead><tbody>`)
		for _, wd := range p.WebhookDeliveries {
			last, status := "–", orDash(wd.Error)
			if wd.LastAttemptAt != nil {
				last = wd.LastAttemptAt.UTC().Format(time.RFC3339)
			}
			if wd.StatusCode != 0 {
				status = fmt.Sprintf("HTTP %d", wd.StatusCode)
				if wd.Error != "" && wd.Outcome != api.DeliveryDelivered {
					status += " · " + wd.Error
				}
			}
			b.f(`<tr class="delivery"><td>%s</td><td><span class="state %s">%s</span></td><td>%d</td><td>%s</td><td>%s</td></tr>`,
				wd.Event, wd.Outcome, wd.Outcome, wd.Attempts, status, last)
		}
		b.f(`</tbody></table>`)
	}
	b.f(`<h2>Input</h2><pre>%s</pre><h2>Output</h2><pre id="job-output">%s</pre><h2>Logs</h2><pre class="logs">%s</pre>`,
		pretty(p.Input), pretty(p.Output), truncate(p.Logs, 64<<10))
	return b.safe()
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "–"
	}
	var out bytes.Buffer
	if json.Indent(&out, raw, "", "  ") != nil {
		return truncate(string(raw), 64<<10)
	}
	return truncate(out.String(), 64<<10)
}

// --- routes ---

func (d *Dashboard) routesPage(w http.ResponseWriter, r *http.Request, v viewer) {
	d.page(w, v, "Routes", "routes", "/ui/events?page=routes", d.live("routes", d.routesFragment(v)))
}

func (d *Dashboard) routesFragment(v viewer) safe {
	if d.opts.Routes == nil {
		return `<p class="empty">Routes are disabled on this server.</p>`
	}
	now := d.now()
	var b buf
	n := 0
	for _, rt := range d.opts.Routes.List() {
		if !v.may(rt.Name) {
			continue
		}
		n++
		hist := d.rec.route(rt.Name)
		var x, qps, thr, pp, sp []float64
		var marks []mark
		priced := false
		for i, s := range hist {
			x = append(x, s.At.Sub(now).Seconds())
			qps, thr = append(qps, s.QPS), append(thr, s.Threshold)
			pp, sp = append(pp, s.Persistent), append(sp, s.Serverless)
			priced = priced || !math.IsNaN(s.Persistent)
			if i > 0 && s.Choice != hist[i-1].Choice {
				marks = append(marks, mark{X: x[i], Y: nan(), Label: hist[i-1].Choice + " → " + s.Choice + ": " + s.Reason})
			}
		}
		choice, reason := "–", ""
		if rt.Status != nil {
			choice, reason = rt.Status.Choice, rt.Status.Reason
		}
		b.f(`<section><h2>%s</h2><p>now: <b>%s</b> · %s</p>%s`, rt.Name, choice, reason,
			lineChart{Title: "measured QPS against the threshold", Y0: true, XFmt: secondsAgo, Series: []series{{"QPS", x, qps}, {"threshold", x, thr}}, Marks: marks}.svg())
		if priced {
			// A cost policy decides on prices, not the threshold: both
			// targets' prices per hour at the measured QPS, switches marked.
			b.f(`<p class="prices">now: persistent %s/h · serverless %s/h</p>%s`, usd(last(pp)), usd(last(sp)),
				lineChart{Title: "price per hour of each target at the measured QPS (USD)", Y0: true, XFmt: secondsAgo,
					Series: []series{{"persistent $/h", x, pp}, {"serverless $/h", x, sp}}, Marks: marks}.svg())
		}
		if len(marks) > 0 {
			b.f(`<ul class="switches">`)
			for _, m := range marks {
				b.f(`<li>%s · %s</li>`, secondsAgo(m.X), m.Label)
			}
			b.f(`</ul>`)
		}
		b.f(`</section>`)
	}
	if n == 0 {
		b.f(`<p class="empty">No routes. <code>ember route apply route.yaml</code> adds one.</p>`)
	}
	return b.safe()
}

// last is the newest value of xs that is a number, NaN when none is.
func last(xs []float64) float64 {
	for i := len(xs) - 1; i >= 0; i-- {
		if !math.IsNaN(xs[i]) {
			return xs[i]
		}
	}
	return math.NaN()
}
