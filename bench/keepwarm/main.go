// Command keepwarm compares keep-warm policies (auto, fixed 10 min, fixed
// 120 s) on a fixed, seeded population of generated functions (periodic,
// bursty, diurnal, rare) and on the Azure Functions 2019 excerpt, replayed
// through the real autoscaler (internal/cost's simulator).
//
//	go run ./bench/keepwarm [-seed 1 -functions 100 -days 3 -azure DIR]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/keepalive"
)

func main() {
	seed := flag.Uint64("seed", 1, "generator seed (the population is fixed by seed and count)")
	n := flag.Int("functions", 100, "generated functions (cycling periodic, bursty, diurnal, rare)")
	days := flag.Float64("days", 3, "days of generated traffic")
	azure := flag.String("azure", "bench/keepwarm/testdata/azure2019-sample", "directory of an Azure 2019 excerpt (invocations.csv, durations.csv); empty to skip")
	hw := flag.String("hardware", "a100-40gb", "hardware class that prices idle seconds")
	coldStart := flag.Duration("cold-start", 10*time.Second, "start-to-ready time of one instance")
	coldUSD := flag.Float64("cold-start-usd", 0, "what one cold start's latency is worth (USD; 0: -cold-start-worth of the hardware's price)")
	coldWorth := flag.Duration("cold-start-worth", keepalive.DefaultColdStartWorth, "what one cold start's latency is worth, as hardware time")
	flag.Parse()
	worth := keepalive.Prices{ColdStartUSD: *coldUSD, ColdStartWorth: *coldWorth}
	if err := run(*seed, *n, *days, *azure, *hw, *coldStart, worth); err != nil {
		fmt.Fprintln(os.Stderr, "keepwarm:", err)
		os.Exit(1)
	}
}

func run(seed uint64, n int, days float64, azure, hw string, coldStart time.Duration, worth keepalive.Prices) error {
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		return err
	}
	gpus := 1
	if hw == "cpu" {
		gpus = 0
	}
	price := cat.HostedPerSecond(hw, gpus)
	var policies []cost.Policy
	for _, p := range []string{"auto", "fixed:10m", "fixed:120s"} {
		pol, _ := cost.ParsePolicy(p)
		policies = append(policies, pol)
	}
	base := cost.Inputs{Hardware: hw, ColdStart: coldStart, Concurrency: 1}
	show := func(title string, mt *cost.MultiTrace) error {
		start := time.Now()
		rs, err := cost.EvaluateKeepWarm(mt, policies, base, price, worth, keepalive.Config{})
		if err != nil {
			return err
		}
		usd := worth.ColdStartUSD
		if !(usd > 0) {
			usd = worth.ColdStartWorth.Seconds() * price
		}
		fmt.Printf("\n%s (%d functions, %.1f days; %s at $%.6f/s, cold start %s worth $%g)\n", title, len(mt.Functions), mt.Span/86400, hw, price, coldStart, usd)
		if err := cost.WriteKeepWarm(os.Stdout, rs); err != nil {
			return err
		}
		fmt.Printf("(simulated in %s)\n", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := show(fmt.Sprintf("generated: seed %d", seed), cost.GenerateTrace(seed, n, days)); err != nil {
		return err
	}
	if azure == "" {
		return nil
	}
	// The 2019 counts say nothing of times within a minute: both
	// placements, since short windows depend on it.
	for _, place := range []cost.Placement{cost.PlaceUniform, cost.PlaceEven} {
		if err := showAzure(azure, seed, place, show); err != nil {
			return err
		}
	}
	return nil
}

func showAzure(azure string, seed uint64, place cost.Placement, show func(string, *cost.MultiTrace) error) error {
	inv, err := os.Open(filepath.Join(azure, "invocations.csv"))
	if err != nil {
		fmt.Printf("\n(Azure excerpt skipped: %v)\n", err)
		return nil
	}
	defer inv.Close()
	dur, _ := os.Open(filepath.Join(azure, "durations.csv"))
	if dur != nil {
		defer dur.Close()
	}
	mt, err := cost.ParseAzure2019Placed(inv, readerOrNil(dur), seed, place)
	if err != nil {
		return err
	}
	return show(fmt.Sprintf("Azure Functions 2019 excerpt (arrivals %s within each minute)", place), mt)
}

// readerOrNil keeps a nil *os.File from becoming a non-nil io.Reader.
func readerOrNil(f *os.File) interface{ Read([]byte) (int, error) } {
	if f == nil {
		return nil
	}
	return f
}
