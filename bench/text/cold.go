package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
)

// coldTask is one function measured by benchCold.
type coldTask struct {
	name, task, dir string
}

// benchCold measures cold starts of the two text tasks through a real
// Ember server in this process (the onnx driver runs this binary as `worker
// onnx`, see main): each iteration waits for each function to be at zero,
// sends one request, and reads the instance's start phases as Ember
// recorded them (GET /v1/functions/{name}/instances, the table `ember
// describe` prints). The tasks alternate, in ABBA order. The first start of
// each function reads its model file from disk rather than the page cache,
// so it is reported apart from the median of the others.
func benchCold(ctx context.Context, out io.Writer, tasks []coldTask, iters, pool int, cache string) error {
	tmp, err := os.MkdirTemp("", "ember-bench-text-cold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = tmp
	cfg.CacheDir = cache
	cfg.ONNXPool = pool
	cfg.LogLevel = "warn"
	cfg.Auth = false
	cfg.Grace = 5 * time.Second
	cfg.Tick = 100 * time.Millisecond
	srvCtx, cancel := context.WithCancel(ctx)
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Serve(srvCtx, cfg, app.NewLogger(cfg, io.Discard), func(a string) { addrs <- a }) }()
	defer func() { cancel(); <-done }()
	var url string
	select {
	case url = <-addrs:
	case err := <-done:
		return fmt.Errorf("ember: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("ember did not start within 30s")
	}
	c := client.New("http://"+url, "")
	for _, t := range tasks {
		spec := fmt.Sprintf("name: %s\nruntime: onnx\ntask: %s\nmodel: %s\nscaling: {min: 0, max: 1, idle_timeout: 1s}\n", t.name, t.task, t.dir)
		if _, err := c.Deploy(ctx, []byte(spec)); err != nil {
			return fmt.Errorf("deploy %s: %w", t.name, err)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Minute}
	type sample struct {
		phases map[string]float64
		first  time.Duration
	}
	samples := map[string][]sample{}
	var order []string
	started := 0
	for i := range iters {
		seq := slices.Clone(tasks)
		if i%2 == 1 {
			slices.Reverse(seq)
		}
		for _, t := range seq {
			if err := waitZero(ctx, c, t.name); err != nil {
				return err
			}
			if pool > 0 {
				// Every earlier start took a pooled worker: wait for one more.
				if err := waitPool(ctx, hc, "http://"+url, started+1); err != nil {
					return err
				}
			}
			started++
			t0 := time.Now()
			resp, err := hc.Post("http://"+url+"/v1/run/"+t.name, "application/json", bytes.NewReader([]byte(`{"text": "I love this movie!"}`)))
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(t0)
			if resp.StatusCode != 200 || resp.Header.Get(api.HeaderColdStart) != "true" {
				return fmt.Errorf("%s: HTTP %d cold=%q: %s", t.name, resp.StatusCode, resp.Header.Get(api.HeaderColdStart), body)
			}
			ins, err := c.Instances(ctx, t.name)
			if err != nil {
				return err
			}
			k := slices.IndexFunc(ins, func(in api.Instance) bool { return in.ID == resp.Header.Get(api.HeaderInstance) })
			if k < 0 {
				return fmt.Errorf("%s: instance %s not listed", t.name, resp.Header.Get(api.HeaderInstance))
			}
			if pooled := slices.Contains(ins[k].PhaseOrder, "pool_acquired"); pooled != (pool > 0) {
				return fmt.Errorf("%s: phases %v: pooled worker used = %v with onnx-pool %d", t.name, ins[k].PhaseOrder, pooled, pool)
			}
			samples[t.name] = append(samples[t.name], sample{phases: ins[k].Phases, first: d})
			for _, p := range ins[k].PhaseOrder {
				if !slices.Contains(order, p) {
					order = append(order, p)
				}
			}
		}
	}
	fmt.Fprintf(out, "\ncold start through Ember (onnx-pool %d), %d starts per task (ABBA), ms since the previous phase, from GET /v1/functions/{name}/instances;\n", pool, iters)
	fmt.Fprintln(out, "\"first\" is each function's first start (model file not yet in the page cache); \"median\" is over the other starts")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "phase\t")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s first\t%s median\t", t.task, t.task)
	}
	fmt.Fprintln(tw)
	row := func(name string, f func(sample) (float64, bool)) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, t := range tasks {
			s := samples[t.name]
			cell := func(ss []sample) string {
				var v []float64
				for _, x := range ss {
					if y, ok := f(x); ok {
						v = append(v, y)
					}
				}
				if len(v) == 0 {
					return "-"
				}
				sort.Float64s(v)
				return fmt.Sprintf("%.1f", v[len(v)/2])
			}
			fmt.Fprintf(tw, "%s\t%s\t", cell(s[:1]), cell(s[1:]))
		}
		fmt.Fprintln(tw)
	}
	for _, p := range order {
		row(p, func(s sample) (float64, bool) { v, ok := s.phases[p]; return v, ok })
	}
	row("start → ready (sum)", func(s sample) (float64, bool) {
		var t float64
		for _, v := range s.phases {
			t += v
		}
		return t, true
	})
	row("first response (client)", func(s sample) (float64, bool) { return ms(s.first), true })
	return tw.Flush()
}

// waitZero waits until the function has no instances.
func waitZero(ctx context.Context, c *client.Client, fn string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ins, err := c.Instances(ctx, fn)
		if err != nil {
			return err
		}
		if len(ins) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not scale to zero within 2 minutes", fn)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitPool waits until n pooled workers have become ready in all, from
// /metrics (the driver reports one ready once it is in the pool).
func waitPool(ctx context.Context, hc *http.Client, url string, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := hc.Get(url + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if metric(b, `ember_instance_transitions_total{function="ember:onnx-pool",to="ready"}`) >= float64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("no pooled onnx worker became ready within 2 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// metric is the value of one series in a Prometheus text exposition (0 if
// absent).
func metric(b []byte, series string) float64 {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte(series+" ")); ok {
			var f float64
			fmt.Sscan(string(v), &f)
			return f
		}
	}
	return 0
}
