// Command jobs measures Ember's durable async jobs end to end on this
// machine: an in-process Ember server with its embedded SQLite database, a
// real sim instance, and N jobs submitted over HTTP by concurrent clients,
// each waiting for its result (Prefer: wait). It prints jobs/s from first
// submit to last completion and the submit → start time (queue_time) p50/p99
// on a warm function.
//
//	go run ./bench/jobs [-jobs 20000] [-clients 64]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
)

func main() {
	// As `ember serve` does: the in-process server runs with the GC target
	// the server runs with (the whole process does, load generator included).
	app.SetGCDefault(os.Getenv)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/jobs:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("jobs", 20000, "jobs to submit")
	clients := flag.Int("clients", 64, "concurrent submitting clients")
	flag.Parse()
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "ember-bench-jobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim := filepath.Join(dir, "sim")
	if out, err := exec.Command("go", "build", "-o", sim, "./examples/sim").CombinedOutput(); err != nil {
		return fmt.Errorf("build sim (run from the repository root): %v\n%s", err, out)
	}

	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.LogLevel, cfg.Auth = "127.0.0.1:0", filepath.Join(dir, "data"), "error", false
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	addrs, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- app.Serve(srvCtx, cfg, app.NewLogger(cfg, io.Discard), func(a string) { addrs <- a }) }()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a
	case err := <-done:
		return err
	}
	defer func() { stop(); <-done }()

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * *clients, MaxIdleConns: 4 * *clients}}
	c := client.New(base, "")
	c.HTTP = hc
	// A trivial function, warm (min 1) with no concurrency cap, so the
	// figure is the job system's, not the model's.
	spec := fmt.Sprintf("name: trivial\ncommand: [%q]\nscaling: {min: 1, max: 1, concurrency: 0}\n", sim)
	if _, err := c.Deploy(ctx, []byte(spec)); err != nil {
		return err
	}
	for {
		ins, err := c.Instances(ctx, "trivial")
		if err == nil && len(ins) == 1 && ins[0].State == api.StateReady {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling readiness
	}

	submit := func() (api.Prediction, error) {
		return c.CreatePrediction(ctx, api.PredictionRequest{Model: "trivial", Input: json.RawMessage(`{"echo": 1}`)},
			client.PredictionOptions{Wait: time.Minute})
	}
	for range 200 { // warm up connections and the database
		if _, err := submit(); err != nil {
			return err
		}
	}

	var next atomic.Int64
	var mu sync.Mutex
	queue := make([]time.Duration, 0, *n)
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				p, err := submit()
				if err != nil || p.Status != api.PredictionSucceeded {
					failed.Add(1)
					continue
				}
				if p.Metrics.QueueTime != nil {
					mu.Lock()
					queue = append(queue, time.Duration(*p.Metrics.QueueTime*float64(time.Second)))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(queue)
	pct := func(p float64) time.Duration {
		if len(queue) == 0 {
			return 0
		}
		return queue[min(len(queue)-1, int(p*float64(len(queue))))]
	}
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	fmt.Printf("machine: %d CPUs, %s, %s\n", runtime.NumCPU(), cpu, runtime.Version())
	fmt.Printf("durable jobs, submit → complete over HTTP, %d clients, embedded SQLite, real sim instance:\n", *clients)
	fmt.Printf("  %d jobs in %s: %.0f jobs/s end to end (target ≥ 2,000), %d failed\n", *n, elapsed.Round(time.Millisecond), float64(*n)/elapsed.Seconds(), failed.Load())
	fmt.Printf("  submit → start (queue_time) on a warm function: p50 %s, p99 %s, max %s\n", pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	return nil
}
