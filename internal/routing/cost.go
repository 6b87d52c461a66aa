package routing

import (
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/route"
	"github.com/ember-run/ember/internal/spec"
)

// Costs prices a route's targets for the cost policy: a function target
// with Ember's closed-form cost model run on its own spec (min, max,
// concurrency, keep-warm), its hardware class's price and its measured
// service and start times; a URL target at its listed prices.
type Costs struct {
	Functions Functions
	Meter     ServiceTimes
	Catalogue *cost.Catalogue
}

// Functions is what pricing needs from the instance manager: a function's
// spec and its start times so far.
type Functions interface {
	Function(name string) (*spec.Function, bool)
	Summary(fn string, now time.Time) (instance.Summary, bool)
}

// ServiceTimes is what pricing needs from metering: the mean service
// time of fn's requests and how many it measured.
type ServiceTimes interface {
	ServiceTime(fn string) (mean time.Duration, n int64)
}

var _ route.CostComparer = Costs{}

// errNoServiceTime means no target of the route has answered a request
// yet, so there is nothing to price a request with.
var errNoServiceTime = errors.New("no measured requests on either target yet")

// HourlyCosts implements route.CostComparer.
func (rc Costs) HourlyCosts(r *route.Route, qps float64) (persistent, serverless float64, err error) {
	// Both targets serve the same model, so the service time measured on
	// either prices both (the serverless one may not have served yet).
	var sum time.Duration
	var n int64
	for _, t := range []route.Target{r.Targets.Persistent, r.Targets.Serverless} {
		if t.Function == "" {
			continue
		}
		mean, k := rc.Meter.ServiceTime(t.Function)
		sum += mean * time.Duration(k)
		n += k
	}
	var svc time.Duration
	if n > 0 {
		svc = sum / time.Duration(n)
	}
	price := func(t route.Target) (float64, error) {
		if t.Function == "" {
			return t.ListedHourlyCost(qps), nil
		}
		if svc <= 0 {
			return 0, errNoServiceTime
		}
		return rc.functionHourly(t.Function, qps, svc)
	}
	if persistent, err = price(r.Targets.Persistent); err != nil {
		return 0, 0, err
	}
	if serverless, err = price(r.Targets.Serverless); err != nil {
		return 0, 0, err
	}
	return persistent, serverless, nil
}

// functionHourly is what function fn costs per hour at qps.
func (rc Costs) functionHourly(fn string, qps float64, svc time.Duration) (float64, error) {
	f, ok := rc.Functions.Function(fn)
	if !ok {
		return 0, fmt.Errorf("function %q is not deployed", fn)
	}
	gpus := f.GPUCount()
	hw := f.HardwareClass()
	perSecond := rc.Catalogue.HostedPerSecond(hw, gpus)
	if perSecond == 0 {
		return 0, fmt.Errorf("no price for hardware class %q of function %q in the price catalogue", hw, fn)
	}
	idle := f.Scaling.IdleTimeout.D()
	if idle == 0 {
		idle = -1 // cost treats 0 as "default"; a function with no keep-warm has none
	}
	u, err := cost.Analytic(cost.Inputs{
		RequestsPerDay:    qps * 86400,
		SecondsPerRequest: svc.Seconds(),
		Hardware:          hw,
		GPUsPerInstance:   gpus,
		Concurrency:       max(f.Scaling.Concurrency, 1), // unlimited priced as 1: the conservative reading
		IdleTimeout:       idle,
		Min:               f.Scaling.Min,
		Max:               f.Scaling.Max,
		ColdStart:         rc.coldStart(fn),
		Target:            f.Scaling.Target,
	})
	if err != nil {
		return 0, err
	}
	hours := cost.Month.Hours()
	return u.Seconds.Total() * perSecond / hours, nil
}

// coldStart is fn's mean start-to-ready time so far, or the cost model's
// default before its first start.
func (rc Costs) coldStart(fn string) time.Duration {
	sum, ok := rc.Functions.Summary(fn, time.Time{})
	if !ok || sum.ColdStarts == 0 {
		return 0 // the model's default
	}
	return max(sum.MeanColdStart, time.Millisecond)
}
