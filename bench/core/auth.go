package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// (c) The gateway's added cost of API-key authentication and rate limiting
// on the warm path. A second in-process Ember runs with auth on; each
// server gets its own sim function of the same kind (min 1, max 1,
// unlimited concurrency). The auth server's is called with an invoke key
// that carries a rate limit too generous to refuse anything, and the
// function has a generous spec rate_limit, so every request pays for the
// key lookup, the scope check and both token buckets. The two targets are
// measured in alternating slices with the same client, as in (a).

// generousRate never refuses at the rates a 2-core machine can send.
const generousRate = "1000000/s"

type authResult struct {
	open, closed [2]*sample // index 0 no auth, 1 auth + limits
	limited      bool       // the auth server answered with RateLimit-* headers
}

func benchAuth(ctx context.Context, o options, hc *http.Client, ec *client.Client, base, dataDir, sim string) (*authResult, error) {
	srv, err := startEmber(ctx, dataDir, o.tick, true)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.key"))
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	admin := client.New(srv.url, strings.TrimSpace(string(b)))
	admin.HTTP = hc

	const fn = "gw"
	spec := simSpec(fn, sim, "{min: 1, max: 1, concurrency: 0, idle_timeout: 1h}")
	for _, c := range []*client.Client{ec, admin} {
		s := spec
		if c == admin {
			s = fmt.Appendf(s, "rate_limit: {rate: %q, burst: 1000000}\n", generousRate)
		}
		if _, err := c.Deploy(ctx, s); err != nil {
			return nil, err
		}
		defer c.Delete(context.WithoutCancel(ctx), fn)
		if err := waitReady(ctx, c, fn); err != nil {
			return nil, err
		}
	}
	key, err := admin.CreateKey(ctx, api.KeyCreate{Name: "bench", Scope: api.ScopeInvoke, Functions: []string{fn},
		Rate: generousRate, Burst: 1000000})
	if err != nil {
		return nil, err
	}
	targets := [2]target{
		{name: "no auth", url: base + "/v1/run/" + fn + "/predict"},
		{name: "auth + limits", url: srv.url + "/v1/run/" + fn + "/predict", key: key.Secret},
	}
	// The auth target must really check: no key is refused, the key is
	// accepted with RateLimit-* headers.
	if _, _, err := call(ctx, hc, targets[1].url); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		return nil, fmt.Errorf("auth server without a key: %v, want HTTP 401", err)
	}
	_, h, err := callKey(ctx, hc, targets[1].url, targets[1].key)
	if err != nil {
		return nil, err
	}
	res := &authResult{limited: h.Get("RateLimit-Limit") != ""}

	measure := func(f func() *sample) *sample {
		self0 := selfCPU()
		s := f()
		s.selfCPU = selfCPU() - self0
		return s
	}
	for i := range targets {
		res.open[i], res.closed[i] = &sample{}, &sample{}
		closedLoop(ctx, hc, targets[i], o.workers, o.warmup)
	}
	order := func(k int) [2]int { // ABBA...
		if k%2 == 0 {
			return [2]int{0, 1}
		}
		return [2]int{1, 0}
	}
	for k := range o.slices {
		for _, i := range order(k) {
			res.open[i].add(measure(func() *sample { return openLoop(ctx, hc, targets[i], o.rate, o.rateDur/time.Duration(o.slices)) }))
		}
	}
	for k := range o.slices {
		for _, i := range order(k) {
			res.closed[i].add(measure(func() *sample {
				return closedLoop(ctx, hc, targets[i], o.workers, o.tputDur/time.Duration(o.slices))
			}))
		}
	}
	return res, ctx.Err()
}

// waitReady waits until fn has one ready instance.
func waitReady(ctx context.Context, c *client.Client, fn string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ins, err := c.Instances(ctx, fn)
		if err != nil {
			return err
		}
		if len(ins) == 1 && ins[0].State == api.StateReady {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s: %+v", fn, ins)
		}
		time.Sleep(10 * time.Millisecond) // polling readiness with a deadline
	}
}

func (r *authResult) print(out io.Writer, o options) {
	fmt.Fprintln(out, "== (c) gateway checks: warm path without and with API-key auth + rate limiting ==")
	fmt.Fprintf(out, "two in-process servers, one sim instance each; open loop %d req/s, %s per target; closed loop %d workers, %s per target; %d alternating slices\n",
		o.rate, o.rateDur, o.workers, o.tputDur, o.slices)
	fmt.Fprintf(out, "auth target: invoke key with rate %s, function rate_limit %s (never refuses); RateLimit-* headers seen: %v\n\n", generousRate, generousRate, r.limited)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp90\tp99\tmax\terrors\tlate sends\tmax req/s (closed)\tclosed p50\tclosed p99\terrors\tCPU/req (closed)\t")
	for i, name := range []string{"no auth", "auth + limits"} {
		op, cl := r.open[i], r.closed[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%d\t%s\t\n", name,
			ms(op.pct(50)), ms(op.pct(90)), ms(op.pct(99)), ms(op.pct(100)), op.errs, op.late,
			cl.rps(), ms(cl.pct(50)), ms(cl.pct(99)), cl.errs, us(cl.cpuPerReq(cl.selfCPU)))
	}
	a, n := r.open[1], r.open[0]
	fmt.Fprintf(tw, "added (auth − no auth)\t%s\t%s\t%s\t\t\t\t×%.2f\t%s\t%s\t\t%s\t\n",
		ms(a.pct(50)-n.pct(50)), ms(a.pct(90)-n.pct(90)), ms(a.pct(99)-n.pct(99)),
		r.closed[1].rps()/max(r.closed[0].rps(), 1), ms(r.closed[1].pct(50)-r.closed[0].pct(50)), ms(r.closed[1].pct(99)-r.closed[0].pct(99)),
		us(r.closed[1].cpuPerReq(r.closed[1].selfCPU)-r.closed[0].cpuPerReq(r.closed[0].selfCPU)))
	tw.Flush()
	fmt.Fprintf(out, "\nadded by auth + rate limiting at %d req/s: p50 %s, p99 %s; closed-loop throughput %.0f%% of no auth\n\n",
		o.rate, ms(a.pct(50)-n.pct(50)), ms(a.pct(99)-n.pct(99)), 100*r.closed[1].rps()/max(r.closed[0].rps(), 1))
}
