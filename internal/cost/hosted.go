package cost

import (
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/spec"
)

// HostedPerSecond is the price of one instance-second of hw with gpus GPUs
// on Ember's own hardware: the first hosted offer for hw in the catalogue,
// times the units an instance occupies. 0 when the class has no price.
// E.g. an 8-GPU offer at $16/h and a 2-GPU instance: 2/8 × 16/3600 $/s.
func (c *Catalogue) HostedPerSecond(hw string, gpus int) float64 {
	for _, o := range c.ForHardware(hw) {
		if o.Kind != KindHosted {
			continue
		}
		units := 1.0
		if o.GPUsPerUnit > 0 && gpus > 0 {
			units = float64(gpus) / float64(o.GPUsPerUnit)
		}
		return o.PerSecond() * units
	}
	return 0
}

// MeterProfile is what metering needs to know about f: its hardware class,
// GPUs, price per instance-second in c, and budget.
func (c *Catalogue) MeterProfile(f *spec.Function) metering.Profile {
	p := metering.Profile{Hardware: f.HardwareClass(), GPUs: f.GPUCount()}
	p.PerSecondUSD = c.HostedPerSecond(p.Hardware, p.GPUs)
	if b := f.Budget; b != nil {
		p.Budget = &metering.Budget{USDPerDay: b.USDPerDay, GPUSecondsPerDay: b.GPUSecondsPerDay, Action: b.Action}
	}
	return p
}
