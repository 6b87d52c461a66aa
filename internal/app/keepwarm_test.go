package app

import (
	"testing"
	"time"

	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/keepalive"
	"github.com/ember-run/ember/internal/spec"
)

// The price a learned keep-warm window weighs idle against: the spec's
// scaling.cold_start_worth, else the server's --default-cold-start-worth,
// whose default is keepalive's documented one.
func TestColdStartWorth(t *testing.T) {
	if got := config.Default().DefaultColdStartWorth; got != keepalive.DefaultColdStartWorth {
		t.Fatalf("--default-cold-start-worth default %s, keepalive.DefaultColdStartWorth %s", got, keepalive.DefaultColdStartWorth)
	}
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DefaultColdStartWorth = 3 * time.Minute
	kw, err := keepWarmOptions(cfg, cat, &coldStarts{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		doc  string
		want time.Duration
	}{
		{`{name: f, command: [x], scaling: {idle_timeout: auto}}`, 3 * time.Minute},
		{`{name: f, command: [x], scaling: {idle_timeout: auto, cold_start_worth: 30s}}`, 30 * time.Second},
		{`{name: f, command: [x], resources: {gpu: {type: a100-40gb, count: 1}}, scaling: {idle_timeout: auto, cold_start_worth: 1h}}`, time.Hour},
	} {
		f, err := spec.Parse([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		pr := kw.Prices(f)
		if pr.ColdStartWorth != tt.want {
			t.Errorf("%s: worth %s, want %s", tt.doc, pr.ColdStartWorth, tt.want)
		}
		// With no start measured yet, a cold start is priced at the worth
		// in hardware time alone.
		if want := tt.want.Seconds() * pr.IdlePerSecond; pr.ColdStartPrice() != want || !(want > 0) {
			t.Errorf("%s: cold start priced $%g, want $%g", tt.doc, pr.ColdStartPrice(), want)
		}
	}
}
