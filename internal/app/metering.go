package app

import (
	"errors"
	"fmt"
	"github.com/ember-run/ember/internal/dashboard"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/telemetry"
)

// observers fans the instance manager's and the gateway's events out to
// metrics and metering.
type observers struct {
	metrics *telemetry.Metrics
	meter   *metering.Meter
	starts  *coldStarts // the keep-warm policy's measured start times
	dash    *dashboard.Recorder
}

func (o observers) Phase(fn, phase string, d time.Duration) {
	o.metrics.Phase(fn, phase, d)
	o.meter.Phase(fn, phase, d)
	if phase == "total" && o.starts != nil {
		o.starts.record(fn, d)
	}
}

func (o observers) StateChange(fn, id, from, to string, at time.Time) {
	o.metrics.StateChange(fn, id, from, to, at)
	o.meter.StateChange(fn, id, from, to, at)
	o.dash.StateChange(fn, id, from, to, at)
}

func (o observers) Busy(fn, id string, busy bool, at time.Time) {
	o.metrics.Busy(fn, id, busy, at)
	o.meter.Busy(fn, id, busy, at)
	o.dash.Busy(fn, id, busy, at)
}

func (o observers) Request(fn string, status int, d, queue time.Duration, cold bool) {
	o.metrics.Request(fn, status, d, queue, cold)
	o.meter.Request(fn, status, d, queue, cold)
	o.dash.Request(fn, status, d, queue, cold)
}

// loadPrices returns the embedded price catalogue merged with
// <data-dir>/prices.yaml when that file exists.
func loadPrices(dataDir string) (*cost.Catalogue, error) {
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, "prices.yaml")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cat, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prices: %w", err)
	}
	cat, err = cat.Merge(b)
	if err != nil {
		return nil, fmt.Errorf("prices %s: %w", path, err)
	}
	return cat, nil
}

// meterProfiles resolves a function's hardware class, price and budget from
// its current spec.
func meterProfiles(mgr *instance.Manager, cat *cost.Catalogue) metering.Profiles {
	return metering.ProfileFunc(func(fn string) (metering.Profile, bool) {
		if fn == onnx.PoolFunction {
			// Waiting workers run on the server's own CPU.
			return metering.Profile{Hardware: "cpu", PerSecondUSD: cat.HostedPerSecond("cpu", 0)}, true
		}
		f, ok := mgr.Function(fn)
		if !ok {
			return metering.Profile{}, false
		}
		return cat.MeterProfile(f), true
	})
}
