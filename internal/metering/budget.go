package metering

import "time"

// Budget actions.
const (
	// ActionWarn logs (once per day and function) and reports; nothing is stopped.
	ActionWarn = "warn"
	// ActionCap caps the function at one instance for the rest of the day.
	ActionCap = "cap"
	// ActionScaleToZero stops every instance and starts none for the rest of the day.
	ActionScaleToZero = "scale-to-zero"
)

// Budget is a per-function daily limit (UTC days). Either limit may be
// zero (unlimited); the budget is over when any set limit is reached.
type Budget struct {
	USDPerDay        float64
	GPUSecondsPerDay float64
	Action           string
}

// BudgetStatus is a function's spend today against its budget.
type BudgetStatus struct {
	Function         string    `json:"function"`
	Day              time.Time `json:"day"`
	SpentUSD         float64   `json:"spent_usd"`
	GPUSeconds       float64   `json:"gpu_seconds"`
	USDPerDay        float64   `json:"usd_per_day,omitempty"`
	GPUSecondsPerDay float64   `json:"gpu_seconds_per_day,omitempty"`
	Action           string    `json:"action,omitempty"`
	// Over is set once a limit is reached; Action then says what applies.
	Over bool `json:"over"`
}

// Budget returns fn's spend today (the UTC day of now), counting live
// instances up to now, against its budget (if the profile has one).
func (m *Meter) Budget(fn string, now time.Time) BudgetStatus {
	prof, _ := m.profiles.Profile(fn)
	m.mu.Lock()
	defer m.mu.Unlock()
	// Charge running instances up to now so a long-lived instance cannot
	// overrun its budget between events.
	for id, in := range m.instances {
		if in.fn == fn {
			m.accountLocked(id, in, now)
		}
	}
	st := BudgetStatus{Function: fn, Day: Truncate(now, ByDay)}
	if t := m.funcs[fn]; t != nil && !t.day.Before(st.Day) {
		st.SpentUSD, st.GPUSeconds = t.usd, t.gpuSeconds
	}
	b := prof.Budget
	if b == nil {
		return st
	}
	st.USDPerDay, st.GPUSecondsPerDay, st.Action = b.USDPerDay, b.GPUSecondsPerDay, b.Action
	if st.Action == "" {
		st.Action = ActionWarn
	}
	st.Over = (b.USDPerDay > 0 && st.SpentUSD >= b.USDPerDay) ||
		(b.GPUSecondsPerDay > 0 && st.GPUSeconds >= b.GPUSecondsPerDay)
	if st.Over {
		t := m.totalsLocked(fn)
		if t.warned.Before(st.Day) {
			t.warned = st.Day
			m.logger.Warn("function over its daily budget", "function", fn, "spent_usd", st.SpentUSD,
				"gpu_seconds", st.GPUSeconds, "usd_per_day", b.USDPerDay, "gpu_seconds_per_day", b.GPUSecondsPerDay, "action", st.Action)
		}
	}
	return st
}

// OverBudget is what the controller calls each tick: the action to apply
// to fn now ("" while within budget or without one) and today's spend in
// USD.
func (m *Meter) OverBudget(fn string, now time.Time) (action string, spentUSD float64) {
	st := m.Budget(fn, now)
	if !st.Over {
		return "", st.SpentUSD
	}
	return st.Action, st.SpentUSD
}
