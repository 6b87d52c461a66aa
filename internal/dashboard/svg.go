package dashboard

import (
	"math"
	"strconv"
)

// Charts are drawn on the server as SVG: no script, no library, and a page
// without JavaScript shows them too. Colours come from classes in ui.css
// (the CSP allows no inline styles).

const (
	chartW, chartH = 640, 240
	padL, padR     = 56, 12
	padT, padB     = 14, 34
)

type series struct {
	Name string
	X, Y []float64
}

// mark is a labelled point (or, with NaN Y, a vertical line) on a chart.
type mark struct {
	X, Y  float64
	Label string
}

type lineChart struct {
	Title      string
	LogX, LogY bool
	XFmt, YFmt func(float64) string
	Series     []series
	Marks      []mark
	// Y0 starts the y axis at zero (linear charts).
	Y0 bool
}

type scale struct {
	lo, hi   float64
	log      bool
	from, to float64 // pixels
}

func (s scale) at(v float64) float64 {
	lo, hi := s.lo, s.hi
	if s.log {
		v, lo, hi = math.Log10(math.Max(v, 1e-12)), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return (s.from + s.to) / 2
	}
	return s.from + (v-lo)/(hi-lo)*(s.to-s.from)
}

// ticks returns up to about n round values in [lo, hi]: powers of ten on a
// log scale, multiples of 1, 2 or 5 × 10^k on a linear one.
func (s scale) ticks(n int) []float64 {
	var out []float64
	if s.log {
		for e := math.Floor(math.Log10(s.lo)); e <= math.Ceil(math.Log10(s.hi)); e++ {
			if v := math.Pow(10, e); v >= s.lo*0.999 && v <= s.hi*1.001 {
				out = append(out, v)
			}
		}
		return out
	}
	span := s.hi - s.lo
	if span <= 0 {
		return []float64{s.lo}
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	for v := math.Ceil(s.lo/step) * step; v <= s.hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func bounds(c lineChart) (x, y scale) {
	x.lo, x.hi, y.lo, y.hi = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			if c.LogY && s.Y[i] <= 0 || c.LogX && s.X[i] <= 0 || math.IsNaN(s.Y[i]) {
				continue
			}
			x.lo, x.hi = math.Min(x.lo, s.X[i]), math.Max(x.hi, s.X[i])
			y.lo, y.hi = math.Min(y.lo, s.Y[i]), math.Max(y.hi, s.Y[i])
		}
	}
	if math.IsInf(x.lo, 0) {
		x.lo, x.hi, y.lo, y.hi = 0, 1, 0, 1
	}
	if c.Y0 && !c.LogY && y.lo > 0 {
		y.lo = 0
	}
	if y.hi == y.lo {
		y.hi = y.lo + 1
	}
	x.log, y.log = c.LogX, c.LogY
	x.from, x.to = padL, chartW-padR
	y.from, y.to = chartH-padB, padT
	return x, y
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// svg renders the chart; its legend lists the series in order (classes s0…).
func (c lineChart) svg() safe {
	xf, yf := c.XFmt, c.YFmt
	if xf == nil {
		xf = shortNum
	}
	if yf == nil {
		yf = shortNum
	}
	xs, ys := bounds(c)
	var b buf
	b.f(`<figure><figcaption>%s</figcaption><svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`, c.Title, chartW, chartH, c.Title, c.Title)
	for _, t := range ys.ticks(4) {
		y := ys.at(t)
		b.f(`<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s"/><text class="tick" x="%d" y="%s" text-anchor="end">%s</text>`,
			padL, chartW-padR, num(y), num(y), padL-4, num(y+4), yf(t))
	}
	for _, t := range xs.ticks(6) {
		x := xs.at(t)
		b.f(`<line class="grid" x1="%s" x2="%s" y1="%d" y2="%d"/><text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`,
			num(x), num(x), padT, chartH-padB, num(x), chartH-padB+14, xf(t))
	}
	for i, s := range c.Series {
		var pts buf
		for j := range s.X {
			if c.LogY && s.Y[j] <= 0 || c.LogX && s.X[j] <= 0 || math.IsNaN(s.Y[j]) {
				continue
			}
			pts.f("%s,%s ", num(xs.at(s.X[j])), num(ys.at(s.Y[j])))
		}
		b.f(`<polyline class="line s%d" points="%s"><title>%s</title></polyline>`, i%8, pts.safe(), s.Name)
	}
	for _, m := range c.Marks {
		x := xs.at(m.X)
		if math.IsNaN(m.Y) {
			b.f(`<line class="mark" x1="%s" x2="%s" y1="%d" y2="%d"><title>%s</title></line>`, num(x), num(x), padT, chartH-padB, m.Label)
			continue
		}
		b.f(`<circle class="mark" cx="%s" cy="%s" r="4"><title>%s</title></circle>`, num(x), num(ys.at(m.Y)), m.Label)
	}
	b.f(`</svg><ul class="legend">`)
	for i, s := range c.Series {
		b.f(`<li><span class="key s%d"></span>%s</li>`, i%8, s.Name)
	}
	b.f(`</ul></figure>`)
	return b.safe()
}

// shortNum writes 1234 as 1.2k and 0.0123 as 0.012.
func shortNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	case a == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// seg is one state of one lane of a timeline, in seconds on its x axis.
type seg struct {
	From, To float64
	State    string
}

type lane struct {
	Label string
	Segs  []seg
}

// timeline draws lanes of coloured states over [lo, hi] seconds (classes
// st-<state>); xf labels the axis.
func timeline(title string, lanes []lane, lo, hi float64, xf func(float64) string) safe {
	const rowH = 18
	h := padT + rowH*max(len(lanes), 1) + padB
	xs := scale{lo: lo, hi: hi, from: 90, to: chartW - padR}
	var b buf
	b.f(`<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`, chartW, h, title, title)
	for i, l := range lanes {
		y := padT + i*rowH
		b.f(`<text class="tick" x="86" y="%d" text-anchor="end">%s</text>`, y+12, l.Label)
		for _, s := range l.Segs {
			x0, x1 := xs.at(math.Max(s.From, lo)), xs.at(math.Min(s.To, hi))
			if x1 <= x0 {
				continue
			}
			b.f(`<rect class="st-%s" x="%s" y="%d" width="%s" height="%d"><title>%s</title></rect>`,
				s.State, num(x0), y+2, num(math.Max(x1-x0, 1)), rowH-4, s.State)
		}
	}
	for _, t := range xs.ticks(6) {
		b.f(`<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`, num(xs.at(t)), h-padB+14, xf(t))
	}
	b.f(`</svg>`)
	return b.safe()
}

// phase is one step of a cold start, in milliseconds.
type phase struct {
	Name string
	Ms   float64
}

// waterfall draws each phase after the one before it, on a shared scale
// of the total (a cold start read left to right).
func waterfall(title string, phases []phase) safe {
	const rowH = 16
	total := 0.0
	for _, p := range phases {
		total += p.Ms
	}
	h := padT + rowH*max(len(phases), 1) + padB
	xs := scale{lo: 0, hi: math.Max(total, 1), from: 110, to: chartW - 80}
	var b buf
	b.f(`<svg class="chart waterfall" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`, chartW, h, title, title)
	at := 0.0
	for i, p := range phases {
		y := padT + i*rowH
		x0, x1 := xs.at(at), xs.at(at+p.Ms)
		b.f(`<text class="tick" x="106" y="%d" text-anchor="end">%s</text><rect class="s%d" x="%s" y="%d" width="%s" height="%d"/><text class="tick" x="%s" y="%d">%s ms</text>`,
			y+11, p.Name, i%8, num(x0), y+2, num(math.Max(x1-x0, 1)), rowH-4, num(x1+4), y+11, num(p.Ms))
		at += p.Ms
	}
	b.f(`<text class="tick" x="110" y="%d">total %s ms</text></svg>`, h-padB+16, num(total))
	return b.safe()
}

// bar is one row of a bar chart; Parts stack (their classes are p0…).
type bar struct {
	Label string
	Parts []float64
	Note  string
}

// bars draws horizontal stacked bars on one shared scale.
func bars(title string, rows []bar, vf func(float64) string) safe {
	const rowH = 20
	hi := 0.0
	for _, r := range rows {
		s := 0.0
		for _, p := range r.Parts {
			s += p
		}
		hi = math.Max(hi, s)
	}
	h := padT + rowH*max(len(rows), 1) + 10
	xs := scale{lo: 0, hi: math.Max(hi, 1e-9), from: 220, to: chartW - 90}
	var b buf
	b.f(`<svg class="chart bars" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`, chartW, h, title, title)
	for i, r := range rows {
		y := padT + i*rowH
		b.f(`<text class="tick" x="216" y="%d" text-anchor="end">%s</text>`, y+13, r.Label)
		at, sum := 0.0, 0.0
		for j, p := range r.Parts {
			x0, x1 := xs.at(at), xs.at(at+p)
			if x1 > x0 {
				b.f(`<rect class="p%d" x="%s" y="%d" width="%s" height="%d"/>`, j%4, num(x0), y+3, num(x1-x0), rowH-6)
			}
			at += p
			sum += p
		}
		b.f(`<text class="tick" x="%s" y="%d">%s%s</text>`, num(xs.at(at)+4), y+13, vf(sum), r.Note)
	}
	b.f(`</svg>`)
	return b.safe()
}
