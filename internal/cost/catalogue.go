package cost

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"sigs.k8s.io/yaml"
)

//go:embed catalogue.yaml
var defaultCatalogue []byte

// Offer kinds.
const (
	// KindAlwaysOn is rented by the hour and paid whether busy or not.
	KindAlwaysOn = "always-on"
	// KindServerless is a hosted per-second offer with its own billing rules.
	KindServerless = "serverless"
	// KindHosted is a hardware class Ember runs itself; the operator sets its price.
	KindHosted = "hosted"
)

// Instance states that can be billed.
const (
	StateLoading = "loading"
	StateBusy    = "busy"
	StateIdle    = "idle"
)

// ErrUnknownHardware is returned when no offer in the catalogue serves the
// requested hardware class.
var ErrUnknownHardware = errors.New("cost: no offer for hardware")

// Catalogue is a set of offers, keyed by ID.
type Catalogue struct {
	Offers []Offer `json:"offers"`
}

// Offer is one price: a provider's unit of hardware and how it bills.
type Offer struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	// Kind is always-on, serverless or hosted.
	Kind string `json:"kind"`
	// Hardware is the class an instance needs, e.g. "a100-40gb" or "cpu".
	Hardware string `json:"hardware"`
	// GPUsPerUnit is how many GPUs one priced unit holds (0 for CPU classes).
	GPUsPerUnit int `json:"gpus_per_unit"`
	// Exactly one of PricePerSecond and PricePerHour is set, in USD per unit.
	PricePerSecond float64 `json:"price_per_second,omitempty"`
	PricePerHour   float64 `json:"price_per_hour,omitempty"`
	Billing        Billing `json:"billing"`
	// Source and AsOf say where the figure came from and when.
	Source string `json:"source"`
	AsOf   string `json:"as_of"`
}

// Billing is an offer's billing rules.
type Billing struct {
	// BilledStates lists the instance states charged: e.g. [busy] for
	// active-time-only offers, [loading, busy, idle] for container lifetime.
	BilledStates []string `json:"billed_states"`
	// MinIncrementSeconds rounds every billed segment up to a multiple of it
	// (0 or 1 bill by the second... 0 bills exactly).
	MinIncrementSeconds float64 `json:"min_increment_seconds,omitempty"`
	// MinChargeSeconds is the least a billed segment costs.
	MinChargeSeconds float64 `json:"min_charge_seconds,omitempty"`
}

// PerSecond returns the offer's price per unit-second.
func (o Offer) PerSecond() float64 {
	if o.PricePerSecond > 0 {
		return o.PricePerSecond
	}
	return o.PricePerHour / 3600
}

// Bills reports whether the offer charges for state.
func (b Billing) Bills(state string) bool { return slices.Contains(b.BilledStates, state) }

// Seconds returns the billed seconds for segments of the given durations:
// each is rounded up to MinIncrementSeconds and raised to MinChargeSeconds.
//
// E.g. increment 60, min charge 0: segments 5s and 61s bill 60 + 120 = 180s.
func (b Billing) Seconds(segments []float64) float64 {
	var sum float64
	for _, s := range segments {
		sum += b.segment(s)
	}
	return sum
}

func (b Billing) segment(s float64) float64 {
	if s <= 0 {
		return 0
	}
	if inc := b.MinIncrementSeconds; inc > 0 {
		// The epsilon keeps float noise (5.000000001) from costing a whole increment.
		s = math.Ceil(s/inc-1e-9) * inc
	}
	return max(s, b.MinChargeSeconds)
}

// SecondsApprox bills count segments of total seconds when their individual
// durations are not known (the closed-form engine): each segment is taken at
// the mean length and rounding adds half an increment on average.
func (b Billing) SecondsApprox(count, total float64) float64 {
	if count <= 0 || total <= 0 {
		return max(total, 0)
	}
	mean := total / count
	inc := b.MinIncrementSeconds
	var per float64
	switch {
	case inc > 1 && mean > inc:
		per = mean + inc/2
	default:
		per = b.segment(mean)
	}
	return count * max(per, b.MinChargeSeconds)
}

// DefaultCatalogue returns the embedded defaults.
func DefaultCatalogue() (*Catalogue, error) {
	return ParseCatalogue(defaultCatalogue)
}

// ParseCatalogue decodes and validates a catalogue from YAML or JSON.
func ParseCatalogue(data []byte) (*Catalogue, error) {
	var c Catalogue
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("cost: catalogue: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Merge overlays the offers in override (YAML, same shape) on c: an offer
// with an existing ID replaces it, a new ID is added. c is not modified.
func (c *Catalogue) Merge(override []byte) (*Catalogue, error) {
	o, err := ParseCatalogue(override)
	if err != nil {
		return nil, err
	}
	out := &Catalogue{Offers: slices.Clone(c.Offers)}
	for _, off := range o.Offers {
		if i := slices.IndexFunc(out.Offers, func(x Offer) bool { return x.ID == off.ID }); i >= 0 {
			out.Offers[i] = off
		} else {
			out.Offers = append(out.Offers, off)
		}
	}
	return out, out.Validate()
}

// Validate checks every offer and names the first bad field.
func (c *Catalogue) Validate() error {
	seen := map[string]bool{}
	for i, o := range c.Offers {
		at := fmt.Sprintf("offers[%d]", i)
		switch {
		case o.ID == "":
			return fmt.Errorf("cost: catalogue: %s.id: required", at)
		case seen[o.ID]:
			return fmt.Errorf("cost: catalogue: %s.id: duplicate %q", at, o.ID)
		case o.Kind != KindAlwaysOn && o.Kind != KindServerless && o.Kind != KindHosted:
			return fmt.Errorf("cost: catalogue: %s.kind: must be always-on, serverless or hosted (got %q)", at, o.Kind)
		case o.Hardware == "":
			return fmt.Errorf("cost: catalogue: %s.hardware: required", at)
		case (o.PricePerSecond > 0) == (o.PricePerHour > 0):
			return fmt.Errorf("cost: catalogue: %s: exactly one of price_per_second and price_per_hour must be > 0", at)
		case o.GPUsPerUnit < 0:
			return fmt.Errorf("cost: catalogue: %s.gpus_per_unit: must be ≥ 0 (got %d)", at, o.GPUsPerUnit)
		case o.Billing.MinIncrementSeconds < 0 || o.Billing.MinChargeSeconds < 0:
			return fmt.Errorf("cost: catalogue: %s.billing: increments must be ≥ 0", at)
		}
		for _, s := range o.Billing.BilledStates {
			if s != StateLoading && s != StateBusy && s != StateIdle {
				return fmt.Errorf("cost: catalogue: %s.billing.billed_states: unknown state %q", at, s)
			}
		}
		seen[o.ID] = true
	}
	return nil
}

// ForHardware returns the offers for hw, always-on first, then serverless,
// then hosted, each group in catalogue order.
func (c *Catalogue) ForHardware(hw string) []Offer {
	var out []Offer
	for _, o := range c.Offers {
		if o.Hardware == hw {
			out = append(out, o)
		}
	}
	rank := map[string]int{KindAlwaysOn: 0, KindServerless: 1, KindHosted: 2}
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Kind] < rank[out[j].Kind] })
	return out
}
