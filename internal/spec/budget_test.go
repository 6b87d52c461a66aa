package spec

import (
	"errors"
	"strings"
	"testing"
)

func TestBudget(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
		wantAction        string
	}{
		{"usd with default action", `{name: a, command: [x], budget: {usd_per_day: 5}}`, "", BudgetWarn},
		{"gpu seconds capped", `{name: a, command: [x], resources: {gpu: {type: a100-40gb, count: 1}}, budget: {gpu_seconds_per_day: 3600, action: cap}}`, "", BudgetCap},
		{"no limit", `{name: a, command: [x], budget: {action: cap}}`, "budget: set usd_per_day or gpu_seconds_per_day", ""},
		{"negative", `{name: a, command: [x], budget: {usd_per_day: -1}}`, "budget.usd_per_day: must be > 0 (got -1;", ""},
		{"gpu seconds on cpu", `{name: a, command: [x], budget: {gpu_seconds_per_day: 10}}`, "budget.gpu_seconds_per_day: needs resources.gpu", ""},
		{"bad action", `{name: a, command: [x], budget: {usd_per_day: 1, action: stop}}`, `budget.action: must be warn, cap or scale-to-zero (got "stop")`, ""},
		{"unknown field", `{name: a, command: [x], budget: {usd: 1}}`, `unknown field`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want %q", err, tt.wantErr)
				}
				var ve *ValidationError
				if strings.HasPrefix(tt.wantErr, "budget") && !errors.As(err, &ve) {
					t.Errorf("error %v is not a *ValidationError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Budget == nil || f.Budget.Action != tt.wantAction {
				t.Errorf("budget = %+v, want action %q", f.Budget, tt.wantAction)
			}
		})
	}
}
