package controller

import (
	"sync"
	"time"
)

// Source is a gateway's activator read in process: it is sampled at each
// tick (activator.Activator satisfies it).
type Source interface {
	// Demand returns fn's time-weighted average concurrency (in flight +
	// queued) since the previous call, and the current level.
	Demand(fn string) (average float64, current int)
	// Forget fails fn's queued requests after the function is removed.
	Forget(fn string)
}

// Report is one activator's demand for one function, sent by a gateway
// that runs elsewhere (Knative's stat forwarding).
type Report struct {
	Source   string // the reporting gateway; a newer report replaces its last
	Function string
	Average  float64 // time-weighted concurrency since its previous report
	Current  int     // in flight + queued when it reported
	At       time.Time
}

// DefaultStaleAfter is how long a pushed report counts when DemandReports
// is built with 0: a few ticks, so a gateway that stops reporting (it died,
// or lost its link) stops holding instances up.
const DefaultStaleAfter = 5 * time.Second

// DemandReports sums the demand for each function over every gateway:
// in-process sources are sampled when asked, pushed reports count until
// they are older than the staleness cutoff. The controller reads it once
// per tick per function. Safe for concurrent use.
type DemandReports struct {
	staleAfter time.Duration

	mu      sync.Mutex // guards the following
	sources []Source
	reports map[string]map[string]Report // function → source → latest
}

// NewDemandReports returns an empty aggregate; reports older than
// staleAfter are ignored (0: DefaultStaleAfter).
func NewDemandReports(staleAfter time.Duration) *DemandReports {
	if staleAfter <= 0 {
		staleAfter = DefaultStaleAfter
	}
	return &DemandReports{staleAfter: staleAfter, reports: make(map[string]map[string]Report)}
}

// Add registers an in-process source, sampled at every Demand call.
func (d *DemandReports) Add(s Source) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources = append(d.sources, s)
}

// Report records r, replacing the previous report of the same source and
// function; an older report than the one held is dropped.
func (d *DemandReports) Report(r Report) {
	d.mu.Lock()
	defer d.mu.Unlock()
	byFn := d.reports[r.Function]
	if byFn == nil {
		byFn = make(map[string]Report)
		d.reports[r.Function] = byFn
	}
	if prev, ok := byFn[r.Source]; ok && prev.At.After(r.At) {
		return
	}
	byFn[r.Source] = r
}

// Demand returns fn's demand at now summed over every source: the
// in-process ones sampled now, and the pushed reports not older than the
// cutoff (stale ones are dropped).
func (d *DemandReports) Demand(fn string, now time.Time) (average float64, current int) {
	d.mu.Lock()
	sources := d.sources
	for src, r := range d.reports[fn] {
		if now.Sub(r.At) > d.staleAfter {
			delete(d.reports[fn], src)
			continue
		}
		average += r.Average
		current += r.Current
	}
	if len(d.reports[fn]) == 0 {
		delete(d.reports, fn)
	}
	d.mu.Unlock()
	// Sampled outside d.mu: a source takes its own queue locks.
	for _, s := range sources {
		a, c := s.Demand(fn)
		average += a
		current += c
	}
	return average, current
}

// Forget drops fn's reports and fails the queued requests of in-process
// sources after fn is removed.
func (d *DemandReports) Forget(fn string) {
	d.mu.Lock()
	delete(d.reports, fn)
	sources := d.sources
	d.mu.Unlock()
	for _, s := range sources {
		s.Forget(fn)
	}
}
