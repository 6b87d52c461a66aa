package app

import (
	"sync"
	"time"

	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/keepalive"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/telemetry"
)

// coldStarts remembers each function's measured start-to-ready time (an
// exponential average of the "total" phase), for the keep-warm price check.
type coldStarts struct {
	mu   sync.Mutex // guards last
	last map[string]time.Duration
}

func (c *coldStarts) record(fn string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]time.Duration{}
	}
	if prev, ok := c.last[fn]; ok {
		d = (prev*3 + d) / 4
	}
	c.last[fn] = d
}

func (c *coldStarts) get(fn string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[fn]
}

// keepWarmOptions wires the learned keep-warm policy: prices from the
// catalogue's hosted price for the function's hardware, start times as
// measured here, counters to /metrics, histograms to the store.
func keepWarmOptions(cfg config.Config, cat *cost.Catalogue, starts *coldStarts, m *telemetry.Metrics, db controller.KeepWarmStore) (controller.KeepWarm, error) {
	kw := controller.KeepWarm{
		Prices: func(f *spec.Function) keepalive.Prices {
			worth := f.Scaling.ColdStartWorth.D()
			if worth <= 0 {
				worth = cfg.DefaultColdStartWorth
			}
			return keepalive.Prices{
				IdlePerSecond:  cat.MeterProfile(f).PerSecondUSD,
				ColdStart:      starts.get(f.Name),
				ColdStartWorth: worth,
			}
		},
		Observer: m,
		Store:    db,
	}
	if cfg.DefaultIdleTimeout != "" {
		d, err := spec.ParseIdle(cfg.DefaultIdleTimeout)
		if err != nil {
			return kw, err
		}
		kw.DefaultIdle = &d
	}
	return kw, nil
}
