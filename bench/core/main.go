// Command core benchmarks Ember's core data path against calling the same
// instance directly, in one run, on this machine:
//
//	go run ./bench/core
//
// (a) Warm path: one sim instance (min=1, max=1, concurrency unlimited) is
// called through Ember (POST /v1/run/sim/predict) and directly at its own
// address (POST /predict). Latency is measured at a fixed open-loop rate;
// maximum throughput with a closed loop of N workers. The two targets are
// measured in alternating slices (ABBA) with one shared, tuned HTTP client,
// so drift on a shared machine hits both alike.
//
// (b) Cold start: the sim binary is started standalone (exec → its
// EMBER_SIM_READY line) and, alternately, a fresh min=0 function is called
// through Ember (send → full response). The platform overhead is Ember's
// first-response time minus the standalone start-to-ready median minus the
// direct warm request latency.
//
// Ember runs in-process (app.Serve on a free loopback port, temporary data
// dir, logs discarded), so --cpuprofile captures the server too.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
)

// Targets from the issue.
const (
	targetAddedP99  = time.Millisecond
	targetColdStart = time.Millisecond // issue 18 (was 5 ms)
	// issue 18: with the readiness notification
	targetColdNotify = time.Millisecond
)

const predictBody = `{"echo":"bench"}`

type options struct {
	rate       int
	rateDur    time.Duration
	workers    int
	tputDur    time.Duration
	warmup     time.Duration
	slices     int
	iterations int
	skipWarm   bool
	skipCold   bool
	cpuprofile string
	memprofile string
	sim        string
	verbose    bool
	tick       time.Duration
	auth       bool   // (c): added cost of auth + rate limiting (auth.go)
	checks     bool   // (a), (b): the main server runs with auth and rate limits on
	adminKey   string // the main server's, when checks (not a flag)
	nginx      bool   // (a): nginx as a peer, where installed (nginx.go)
	nginxCheck bool   // (a): also nginx with per-call checks like Ember's (nginx.go)
	floor      bool   // (a): net/http + the lean forwarder alone (floor.go)
}

func main() {
	// As `ember serve` does: the in-process server runs with the GC target
	// the server runs with (the whole process does, load generator included).
	app.SetGCDefault(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/core:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("core", flag.ContinueOnError)
	fs.IntVar(&o.rate, "rate", 500, "open-loop request rate (req/s) for the latency measurement")
	fs.DurationVar(&o.rateDur, "rate-duration", 8*time.Second, "open-loop time per target")
	fs.IntVar(&o.workers, "workers", 8, "closed-loop workers for the max-throughput measurement")
	fs.DurationVar(&o.tputDur, "throughput-duration", 4*time.Second, "closed-loop time per target")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up per target before measuring")
	fs.IntVar(&o.slices, "slices", 4, "alternating slices per measurement (ABBA order); each target gets duration/slices per slice")
	fs.IntVar(&o.iterations, "iterations", 15, "cold-start iterations (each: one standalone start and one start through Ember)")
	fs.BoolVar(&o.skipWarm, "skip-warm", false, "skip the warm-path measurement")
	fs.BoolVar(&o.skipCold, "skip-cold", false, "skip the cold-start measurement")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole process (load generator and in-process Ember) to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile of the whole process to this file at the end")
	fs.StringVar(&o.sim, "sim", "", "a prebuilt examples/sim binary (default: go build it into a temp dir)")
	fs.BoolVar(&o.verbose, "v", false, "print every cold-start iteration")
	fs.DurationVar(&o.tick, "tick", config.Default().Tick, "Ember's controller tick")
	fs.BoolVar(&o.nginx, "nginx", true, "in (a), also measure nginx (keep-alive upstream, a worker per core, access log off) in front of the same instance; skipped when nginx is not on PATH")
	fs.BoolVar(&o.nginxCheck, "nginx-checks", false, "in (a), also measure nginx doing per-call work comparable to Ember's checks (the key compared, limit_req per key and per server, a buffered access log); needs -checks and nginx")
	fs.BoolVar(&o.floor, "floor", true, "in (a), also measure the floor: an in-process net/http server with only Ember's forwarder (internal/proxy) in front of the same instance, so the gap to nginx splits into what Ember's features cost and what net/http costs")
	fs.BoolVar(&o.checks, "checks", true, "run the main server (parts a and b) as in production: API-key auth on, (a) calls with an invoke key that has a rate limit, and the function has a rate_limit (both too generous to refuse); metering and metrics are always on")
	fs.BoolVar(&o.auth, "auth", false, "also measure (c): the warm path with and without API-key auth + rate limiting (a second in-process Ember with auth on)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.rate <= 0 || o.workers <= 0 || o.slices <= 0 || o.iterations < 0 {
		return o, errors.New("rate, workers and slices must be > 0, iterations ≥ 0")
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	printMachine(out)

	tmp, err := os.MkdirTemp("", "ember-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sim := o.sim
	if sim == "" {
		sim = filepath.Join(tmp, "sim")
		build := exec.CommandContext(ctx, "go", "build", "-o", sim, "./examples/sim")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build examples/sim (run from the repository root): %w", err)
		}
	} else if sim, err = filepath.Abs(sim); err != nil {
		return err
	}
	defer func() { fmt.Fprintf(out, "load average at the end: %s\n", loadavg()) }()

	srv, err := startEmber(ctx, filepath.Join(tmp, "data"), o.tick, o.checks)
	if err != nil {
		return err
	}
	defer srv.stop()

	hc := newHTTPClient(o.workers)
	defer hc.CloseIdleConnections()
	adminKey := ""
	if o.checks {
		b, err := os.ReadFile(filepath.Join(tmp, "data", "admin.key"))
		if err != nil {
			return fmt.Errorf("admin key: %w", err)
		}
		adminKey = strings.TrimSpace(string(b))
		o.adminKey = adminKey
	}
	ec := client.New(srv.url, adminKey)
	ec.HTTP = hc

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if o.memprofile != "" {
		defer func() {
			f, err := os.Create(o.memprofile)
			if err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}

	var warm *warmResult
	if !o.skipWarm {
		pprof.Do(ctx, pprof.Labels("role", "loadgen"), func(ctx context.Context) {
			warm, err = benchWarm(ctx, o, hc, ec, srv.url, sim)
		})
		if err != nil {
			return fmt.Errorf("warm path: %w", err)
		}
		warm.print(out, o)
	}
	if !o.skipCold && o.iterations > 0 {
		var cold *coldResult
		pprof.Do(ctx, pprof.Labels("role", "loadgen"), func(ctx context.Context) {
			cold, err = benchCold(ctx, o, hc, ec, srv.url, sim)
		})
		if err != nil {
			return fmt.Errorf("cold start: %w", err)
		}
		var directWarm time.Duration
		if warm != nil {
			directWarm = warm.open[1].pct(50)
		}
		cold.print(out, directWarm, o.verbose)
	}
	if o.auth {
		var ar *authResult
		// (c) compares with a server that has auth off.
		base, bc := srv.url, ec
		if o.checks {
			plain, err := startEmber(ctx, filepath.Join(tmp, "data-plain"), o.tick, false)
			if err != nil {
				return err
			}
			defer plain.stop()
			base, bc = plain.url, client.New(plain.url, "")
			bc.HTTP = hc
		}
		pprof.Do(ctx, pprof.Labels("role", "loadgen"), func(ctx context.Context) {
			ar, err = benchAuth(ctx, o, hc, bc, base, filepath.Join(tmp, "data-auth"), sim)
		})
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		ar.print(out, o)
	}
	return nil
}

// printMachine says what the numbers were measured on.
func printMachine(out io.Writer) {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	fmt.Fprintf(out, "machine: %d CPUs (nproc), %s, %s %s/%s, GOMAXPROCS=%d, GC target %s\n",
		runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), gcTarget())
	fmt.Fprintf(out, "load average at the start: %s (other work on the machine skews p99 and throughput)\n", loadavg())
	fmt.Fprintln(out, "note: load generator, Ember (in-process) and the sim instance share these CPUs")
	fmt.Fprintln(out)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// ember is the in-process server.
type ember struct {
	url  string
	stop func()
}

func startEmber(ctx context.Context, dataDir string, tick time.Duration, auth bool) (*ember, error) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.LogLevel = "warn"
	cfg.Auth = auth // off for (a) and (b), which measure the data path; (c) compares
	cfg.Grace = 5 * time.Second
	cfg.Tick = tick
	logger := app.NewLogger(cfg, io.Discard)

	srvCtx, cancel := context.WithCancel(ctx)
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	// The label follows every goroutine the server starts, so a profile
	// can be split into Ember and load generator (pprof -tagfocus role=ember).
	go pprof.Do(srvCtx, pprof.Labels("role", "ember"), func(ctx context.Context) {
		done <- app.Serve(ctx, cfg, logger, func(a string) { addrs <- a })
	})
	select {
	case a := <-addrs:
		return &ember{url: "http://" + a, stop: func() { cancel(); <-done }}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("ember: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, errors.New("ember did not start within 30s")
	}
}

// newHTTPClient is the one client both targets are measured with: enough
// idle connections per host that no worker ever dials mid-measurement.
func newHTTPClient(workers int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * workers,
		MaxIdleConnsPerHost: 2 * workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func simSpec(name, sim, scaling string) []byte {
	return fmt.Appendf(nil, "name: %s\ncommand: [%q]\nscaling: %s\n", name, sim, scaling)
}

// call sends one predict request and reads the whole answer.
func call(ctx context.Context, hc *http.Client, url string) (time.Duration, http.Header, error) {
	return callKey(ctx, hc, url, "")
}

// callKey is call with an API key ("" for none).
func callKey(ctx context.Context, hc *http.Client, url, key string) (time.Duration, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(predictBody))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return d, resp.Header, err
	}
	if resp.StatusCode != http.StatusOK {
		return d, resp.Header, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return d, resp.Header, nil
}

// ---- warm path ----

type target struct {
	name, url string
	key       string // API key sent as a bearer token; "" for none
}

// sample is a set of latencies with the time they took to collect.
type sample struct {
	lat     []time.Duration
	errs    int
	elapsed time.Duration
	late    int // open loop: sends that started > 1ms behind schedule
	cut     int // closed loop: requests cut off at the end of the slice
	// CPU time spent meanwhile by this process (load generator and
	// Ember) and by the sim instance.
	selfCPU, simCPU time.Duration
	proxyCPU        time.Duration // nginx's own processes (the nginx target)
	// Heap allocations by this process meanwhile (runtime.MemStats.Mallocs):
	// unlike CPU time, a count the machine's load does not skew.
	mallocs uint64
	sorted  bool
}

func (s *sample) add(o *sample) {
	s.lat = append(s.lat, o.lat...)
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.late += o.late
	s.cut += o.cut
	s.selfCPU += o.selfCPU
	s.simCPU += o.simCPU
	s.proxyCPU += o.proxyCPU
	s.mallocs += o.mallocs
	s.sorted = false
}

func (s *sample) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.lat)
		s.sorted = true
	}
	i := int(float64(len(s.lat)-1) * p / 100)
	return s.lat[i]
}

// cpuPerReq returns the CPU time per completed request.
func (s *sample) cpuPerReq(d time.Duration) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	return d / time.Duration(len(s.lat))
}

func (s *sample) allocsPerReq() float64 {
	if len(s.lat) == 0 {
		return 0
	}
	return float64(s.mallocs) / float64(len(s.lat))
}

func (s *sample) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(len(s.lat)) / s.elapsed.Seconds()
}

type warmResult struct {
	open, closed []*sample // per target: 0 Ember, 1 direct, then nginx, nginx-checks and floor where measured
	names        []string
	nginxNote    string // why nginx is absent, if it is
	instance     string
	servedDelta  int64
	sent         int
	simPID       int
	checks       bool // auth + rate limits on for the Ember target
}

func benchWarm(ctx context.Context, o options, hc *http.Client, ec *client.Client, base, sim string) (*warmResult, error) {
	spec := simSpec("sim", sim, "{min: 1, max: 1, concurrency: 0, idle_timeout: 1h}")
	if o.checks {
		spec = fmt.Appendf(spec, "rate_limit: {rate: %q, burst: 1000000}\n", generousRate)
	}
	if _, err := ec.Deploy(ctx, spec); err != nil {
		return nil, err
	}
	defer ec.Delete(context.WithoutCancel(ctx), "sim")
	var in api.Instance
	deadline := time.Now().Add(30 * time.Second)
	for {
		ins, err := ec.Instances(ctx, "sim")
		if err != nil {
			return nil, err
		}
		if len(ins) == 1 && ins[0].State == api.StateReady && ins[0].Addr != "" {
			in = ins[0]
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sim not ready after 30s: %+v", ins)
		}
		time.Sleep(10 * time.Millisecond) // polling readiness with a deadline
	}
	targets := []target{
		{name: "ember", url: base + "/v1/run/sim/predict"},
		{name: "direct", url: "http://" + in.Addr + "/predict"},
	}
	res := &warmResult{instance: in.ID, simPID: childPID(sim), checks: o.checks}
	if o.checks {
		// Every Ember request pays for the bearer-token lookup, the scope
		// check and both token buckets; none is refused.
		key, err := ec.CreateKey(ctx, api.KeyCreate{Name: "bench-warm", Scope: api.ScopeInvoke, Functions: []string{"sim"},
			Rate: generousRate, Burst: 1000000})
		if err != nil {
			return nil, err
		}
		targets[0].key = key.Secret
		if _, _, err := call(ctx, hc, targets[0].url); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
			return nil, fmt.Errorf("ember without a key: %v, want HTTP 401 (auth is on)", err)
		}
	}
	var ngx, ngxChecks *nginx
	if o.nginx {
		dir, err := os.MkdirTemp("", "ember-bench-nginx-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		switch ngx, err = startNginx(ctx, dir, in.Addr, ""); {
		case errors.Is(err, errNoNginx):
			res.nginxNote = "nginx: skipped, no nginx on PATH (apt-get install nginx-light; see bench/README.md)"
		case err != nil:
			return nil, err
		default:
			defer ngx.stop()
			targets = append(targets, target{name: "nginx", url: ngx.url + "/predict"})
		}
		if ngx != nil && o.nginxCheck && o.checks {
			cdir := filepath.Join(dir, "checks")
			if ngxChecks, err = startNginx(ctx, cdir, in.Addr, targets[0].key); err != nil {
				return nil, err
			}
			defer ngxChecks.stop()
			t := target{name: "nginx-checks", url: ngxChecks.url + "/predict", key: targets[0].key}
			// As for Ember: the checks must be on, so a call without the key is refused.
			if _, _, err := call(ctx, hc, t.url); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
				return nil, fmt.Errorf("nginx-checks without a key: %v, want HTTP 401", err)
			}
			targets = append(targets, t)
		}
	} else {
		res.nginxNote = "nginx: skipped (-nginx=false)"
	}
	if o.floor {
		fl, err := startFloor(in.Addr)
		if err != nil {
			return nil, err
		}
		defer fl.stop()
		targets = append(targets, target{name: "floor", url: fl.url + "/predict"})
	}
	for _, t := range targets {
		res.names = append(res.names, t.name)
	}
	// Both paths must reach the very same instance.
	if _, h, err := callKey(ctx, hc, targets[0].url, targets[0].key); err != nil {
		return nil, err
	} else if got := h.Get(api.HeaderInstance); got != in.ID {
		return nil, fmt.Errorf("ember routed to %q, want the one instance %q", got, in.ID)
	}
	served0, err := simServed(ctx, hc, in.Addr)
	if err != nil {
		return nil, err
	}

	res.open, res.closed = make([]*sample, len(targets)), make([]*sample, len(targets))
	measure := func(f func() *sample) *sample {
		// Both nginx peers' processes: each is idle outside its own slices.
		proxies := func() (d time.Duration) {
			for _, n := range []*nginx{ngx, ngxChecks} {
				if n != nil {
					d += n.groupCPU()
				}
			}
			return d
		}
		px0 := proxies()
		self0, sim0, m0 := selfCPU(), procCPU(res.simPID), mallocs()
		s := f()
		s.selfCPU, s.simCPU, s.mallocs = selfCPU()-self0, procCPU(res.simPID)-sim0, mallocs()-m0
		s.proxyCPU = proxies() - px0
		return s
	}
	for i := range targets {
		res.open[i], res.closed[i] = &sample{}, &sample{}
		// Warm up: fill the connection pools on both hops, let the
		// runtime size its heaps.
		w := closedLoop(ctx, hc, targets[i], o.workers, o.warmup)
		res.sent += len(w.lat) + w.errs + w.cut
	}
	order := func(k int) []int { // ABC CBA ABC ...: interleaved, drift hits all alike
		idx := make([]int, len(targets))
		for i := range idx {
			idx[i] = i
		}
		if k%2 == 1 {
			slices.Reverse(idx)
		}
		return idx
	}
	for k := range o.slices {
		for _, i := range order(k) {
			s := measure(func() *sample { return openLoop(ctx, hc, targets[i], o.rate, o.rateDur/time.Duration(o.slices)) })
			res.open[i].add(s)
			res.sent += len(s.lat) + s.errs
		}
	}
	for k := range o.slices {
		for _, i := range order(k) {
			s := measure(func() *sample {
				return closedLoop(ctx, hc, targets[i], o.workers, o.tputDur/time.Duration(o.slices))
			})
			res.closed[i].add(s)
			res.sent += len(s.lat) + s.errs + s.cut
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	served1, err := simServed(ctx, hc, in.Addr)
	if err != nil {
		return nil, err
	}
	res.servedDelta = served1 - served0
	return res, nil
}

// simServed reads the instance's own request counter.
func simServed(ctx context.Context, hc *http.Client, addr string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// {"in_flight":0,"max_in_flight":n,"served":m}
	_, v, ok := bytes.Cut(b, []byte(`"served":`))
	if !ok {
		return 0, fmt.Errorf("stats: %s", b)
	}
	v = bytes.TrimRight(bytes.TrimSpace(v), "}")
	return strconv.ParseInt(string(v), 10, 64)
}

// mallocs is this process's heap allocation count so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// selfCPU is the user+system CPU time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user+system CPU time of process pid so far (clock ticks
// of 10ms, so only long slices give useful numbers).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after comm: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// childPID finds the one child of this process running the binary at exe.
func childPID(exe string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); link == exe {
			return pid
		}
	}
	return 0
}

// openLoop sends at a fixed rate regardless of how fast answers come, each
// request on its own goroutine, and measures each from its actual send.
func openLoop(ctx context.Context, hc *http.Client, t target, rate int, d time.Duration) *sample {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var late atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w) // pacing the open loop
		} else if -w > time.Millisecond {
			late.Add(1)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			l, _, err := callKey(ctx, hc, t.url, t.key)
			lat[i], ok[i] = l, err == nil
		})
	}
	wg.Wait()
	s := &sample{elapsed: time.Since(start), late: int(late.Load())}
	for i := range n {
		if ok[i] {
			s.lat = append(s.lat, lat[i])
		} else {
			s.errs++
		}
	}
	return s
}

// closedLoop runs workers that each send the next request as soon as the
// previous answer is read.
func closedLoop(ctx context.Context, hc *http.Client, t target, workers int, d time.Duration) *sample {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	per := make([]*sample, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		per[w] = &sample{}
		wg.Go(func() {
			s := per[w]
			for ctx.Err() == nil {
				l, _, err := callKey(ctx, hc, t.url, t.key)
				switch {
				case err == nil:
					s.lat = append(s.lat, l)
				case ctx.Err() == nil:
					s.errs++
				default:
					s.cut++
				}
			}
		})
	}
	wg.Wait()
	total := &sample{}
	for _, s := range per {
		total.add(s)
	}
	total.elapsed = time.Since(start)
	return total
}

func (r *warmResult) print(out io.Writer, o options) {
	fmt.Fprintf(out, "== (a) warm path: one sim instance (%s), same instance behind every target ==\n", r.instance)
	if r.checks {
		fmt.Fprintf(out, "ember: auth on (invoke key, rate %s), function rate_limit %s, metering and metrics on (-checks=false turns auth and limits off)\n", generousRate, generousRate)
	} else {
		fmt.Fprintln(out, "ember: auth and rate limits OFF (-checks=false); metering and metrics on")
	}
	fmt.Fprintf(out, "open loop %d req/s, %s per target; closed loop %d workers, %s per target; %d interleaved slices\n",
		o.rate, o.rateDur, o.workers, o.tputDur, o.slices)
	if r.nginxNote != "" {
		fmt.Fprintln(out, r.nginxNote)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp90\tp99\tmax\treq/s (open)\terrors\tlate sends\tmax req/s (closed)\tclosed p50\tclosed p99\terrors\t")
	for i, name := range r.names {
		op, cl := r.open[i], r.closed[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%d\t%.0f\t%s\t%s\t%d\t\n", name,
			ms(op.pct(50)), ms(op.pct(90)), ms(op.pct(99)), ms(op.pct(100)), op.rps(), op.errs, op.late,
			cl.rps(), ms(cl.pct(50)), ms(cl.pct(99)), cl.errs)
	}
	d, dc := r.open[1], r.closed[1]
	for i, name := range r.names {
		if i == 1 {
			continue
		}
		e, ec := r.open[i], r.closed[i]
		fmt.Fprintf(tw, "added (%s − direct)\t%s\t%s\t%s\t\t\t\t\t×%.2f\t%s\t%s\t\t\n", name,
			ms(e.pct(50)-d.pct(50)), ms(e.pct(90)-d.pct(90)), ms(e.pct(99)-d.pct(99)),
			ec.rps()/max(dc.rps(), 1), ms(ec.pct(50)-dc.pct(50)), ms(ec.pct(99)-dc.pct(99)))
	}
	tw.Flush()
	added := r.open[0].pct(99) - d.pct(99)
	fmt.Fprintf(out, "\nadded p99 at %d req/s: %s (target ≤ %s): %s\n", o.rate, ms(added), ms(targetAddedP99), verdict(added <= targetAddedP99))
	fmt.Fprintf(out, "throughput through Ember: %.0f%% of direct\n", 100*r.closed[0].rps()/max(dc.rps(), 1))
	ep50 := r.closed[0].pct(50) - dc.pct(50)
	n, f := r.index("nginx"), r.index("floor")
	if n >= 0 {
		nc := r.closed[n]
		np50 := nc.pct(50) - dc.pct(50)
		fmt.Fprintf(out, "vs nginx (closed loop, %d workers): added p50 %s vs %s (×%s, target ≤ 1.00: %s), throughput ×%.2f (target ≥ 1.00: %s)\n",
			o.workers, ms(ep50), ms(np50), ratio(ep50, np50), verdict(ep50 <= np50),
			r.closed[0].rps()/max(nc.rps(), 1), verdict(r.closed[0].rps() >= nc.rps()))
		if f >= 0 {
			fc := r.closed[f]
			fmt.Fprintf(out, "floor (net/http + forwarder only) vs nginx: added p50 ×%s, throughput ×%.2f\n",
				ratio(fc.pct(50)-dc.pct(50), np50), fc.rps()/max(nc.rps(), 1))
		}
	}
	if c := r.index("nginx-checks"); c >= 0 {
		cc := r.closed[c]
		fmt.Fprintf(out, "vs nginx with checks (key compared, limit_req per key and per server, access log): added p50 %s vs %s (×%s), throughput ×%.2f\n",
			ms(ep50), ms(cc.pct(50)-dc.pct(50)), ratio(ep50, cc.pct(50)-dc.pct(50)), r.closed[0].rps()/max(cc.rps(), 1))
	}
	if f >= 0 {
		fc := r.closed[f]
		fmt.Fprintf(out, "Ember vs floor (what Ember's features cost): added p50 ×%s, throughput ×%.2f\n",
			ratio(ep50, fc.pct(50)-dc.pct(50)), r.closed[0].rps()/max(fc.rps(), 1))
	}
	fmt.Fprintf(out, "instance served %d predict requests during the run, %d sent in all (every target hits it)\n", r.servedDelta, r.sent)
	if r.simPID != 0 {
		// In the direct rows this process is only the load generator, so
		// the difference of the two rows is Ember's own CPU per request.
		fmt.Fprintln(out, "\nCPU per request (closed loop):")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tbench process\tnginx\tsim instance\ttotal\tallocs/req (bench process)\t")
		for i, name := range r.names {
			s := r.closed[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\t\n", name, us(s.cpuPerReq(s.selfCPU)), us(s.cpuPerReq(s.proxyCPU)),
				us(s.cpuPerReq(s.simCPU)), us(s.cpuPerReq(s.selfCPU+s.proxyCPU+s.simCPU)), s.allocsPerReq())
		}
		e, d := r.closed[0], r.closed[1]
		fmt.Fprintf(tw, "Ember's own (ember − direct)\t%s\t\t\t\t%.1f\t\n", us(e.cpuPerReq(e.selfCPU)-d.cpuPerReq(d.selfCPU)),
			e.allocsPerReq()-d.allocsPerReq())
		if f := r.index("floor"); f >= 0 {
			fc := r.closed[f]
			fmt.Fprintf(tw, "Ember's features (ember − floor)\t%s\t\t\t\t%.1f\t\n", us(e.cpuPerReq(e.selfCPU)-fc.cpuPerReq(fc.selfCPU)),
				e.allocsPerReq()-fc.allocsPerReq())
		}
		tw.Flush()
	}
	fmt.Fprintln(out)
}

// ratio is a/b to two decimals, or "n/a" when b is not positive (an added
// latency at or below the direct one's).
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// index is the position of the target called name, or -1.
func (r *warmResult) index(name string) int {
	return slices.Index(r.names, name)
}

// ---- cold start ----

type coldResult struct {
	standalone  []time.Duration // exec → EMBER_SIM_READY
	firstDirect []time.Duration // first request right after ready, new connection
	ember       []time.Duration // send → full response, function at zero
	notified    []time.Duration // the same, sim started with --notify
	nTimings    []string        // Server-Timing of each notified call
	phases      map[string][]float64
	phaseOrder  []string
	timings     []string // Server-Timing per iteration
}

func benchCold(ctx context.Context, o options, hc *http.Client, ec *client.Client, base, sim string) (*coldResult, error) {
	r := &coldResult{phases: map[string][]float64{}}
	standalone := func() error {
		ready, first, err := startStandalone(ctx, hc, sim)
		if err != nil {
			return err
		}
		r.standalone = append(r.standalone, ready)
		r.firstDirect = append(r.firstDirect, first)
		return nil
	}
	// The notifying sim is one function that scales to zero after each
	// call (idle_timeout 1s) and starts again: a version whose instances
	// said READY=1 before is not probed while it starts (the process
	// driver learns it), which is the steady state of a function that
	// wakes many times. One untimed start teaches it.
	const notifyFn = "coldn"
	notifySpec := fmt.Appendf(nil, "name: %s\ncommand: [%q, \"--notify=true\"]\nscaling: {min: 0, max: 1, concurrency: 0, idle_timeout: 1s}\n", notifyFn, sim)
	coldCall := func(name string) (time.Duration, http.Header, error) {
		d, h, err := callKey(ctx, hc, base+"/v1/run/"+name+"/predict", o.adminKey)
		if err == nil && h.Get(api.HeaderColdStart) != "true" {
			err = fmt.Errorf("%s: first request was not a cold start", name)
		}
		return d, h, err
	}
	viaEmber := func(i int, notify bool) error {
		if notify {
			d, h, err := coldCall(notifyFn)
			if err != nil {
				return err
			}
			r.notified = append(r.notified, d)
			r.nTimings = append(r.nTimings, h.Get(api.HeaderServerTiming))
			return waitGone(ctx, ec, notifyFn) // its idle timeout
		}
		name := fmt.Sprintf("cold%d", i)
		if _, err := ec.Deploy(ctx, simSpec(name, sim, "{min: 0, max: 1, concurrency: 0, idle_timeout: 1h}")); err != nil {
			return err
		}
		d, h, err := coldCall(name)
		if err != nil {
			return err
		}
		r.ember = append(r.ember, d)
		r.recordTiming(h.Get(api.HeaderServerTiming), d)
		r.timings = append(r.timings, h.Get(api.HeaderServerTiming))
		if err := ec.Delete(ctx, name); err != nil {
			return err
		}
		return waitGone(ctx, ec, name)
	}
	if _, err := ec.Deploy(ctx, notifySpec); err != nil {
		return nil, err
	}
	if _, _, err := coldCall(notifyFn); err != nil {
		return nil, err
	}
	if err := waitGone(ctx, ec, notifyFn); err != nil {
		return nil, err
	}
	for i := range o.iterations {
		steps := []func() error{standalone, func() error { return viaEmber(i, false) }, func() error { return viaEmber(i, true) }}
		if i%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// startStandalone execs the sim binary with PORT set and returns the time
// from exec to its ready line and the time of a first request after that.
func startStandalone(ctx context.Context, hc *http.Client, sim string) (ready, first time.Duration, err error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(sim)
	cmd.Env = append(os.Environ(), "PORT="+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var readyNs int64
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "EMBER_SIM_READY "); ok {
			readyNs, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("ready line: %w", err)
			}
			break
		}
	}
	if readyNs == 0 {
		return 0, 0, fmt.Errorf("sim exited before its ready line: %v", sc.Err())
	}
	// Keep draining stdout (one log line per request) so the sim never
	// blocks on a full pipe; the reader ends when the process exits.
	go io.Copy(io.Discard, stdout)
	ready = time.Duration(readyNs - t0.UnixNano())
	first, _, err = call(ctx, hc, "http://127.0.0.1:"+port+"/predict")
	return ready, first, err
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, p, err := net.SplitHostPort(ln.Addr().String())
	return p, err
}

// waitGone waits until the function's instances are stopped, so the next
// iteration does not share the CPUs with a process shutting down.
func waitGone(ctx context.Context, ec *client.Client, name string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ins, err := ec.Instances(ctx, name)
		if client.IsNotFound(err) || (err == nil && len(ins) == 0) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	return fmt.Errorf("%s: instances still running after 15s", name)
}

// recordTiming parses "queue;dur=1.2, spawned;dur=0.8, ..." into phases,
// and derives where the rest of the first response's time went: queue −
// the start phases is the time from arrival to the scale decision plus
// from readiness to dispatch; first response − queue is everything after
// the slot (the client's send and Ember's parsing before the activator,
// the proxy, the instance's first request on a new connection, and the
// response back).
func (r *coldResult) recordTiming(st string, first time.Duration) {
	var queue, started float64
	defer func() {
		r.phases[phaseGap] = append(r.phases[phaseGap], queue-started)
		r.phases[phaseAfterSlot] = append(r.phases[phaseAfterSlot], float64(first)/float64(time.Millisecond)-queue)
	}()
	for part := range strings.SplitSeq(st, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(dur, 64)
		if err != nil {
			continue
		}
		if _, seen := r.phases[name]; !seen {
			r.phaseOrder = append(r.phaseOrder, name)
		}
		r.phases[name] = append(r.phases[name], v)
		if name == "queue" {
			queue = v
		} else {
			started += v
		}
	}
}

// Derived rows of the cold-start table (recordTiming).
const (
	phaseGap       = "queue − start phases (arrival → decision, ready → dispatch)"
	phaseAfterSlot = "first response − queue (send, proxy, first request, reply)"
)

func (r *coldResult) print(out io.Writer, directWarm time.Duration, verbose bool) {
	n := len(r.ember)
	fmt.Fprintf(out, "== (b) cold start: %d iterations, standalone and through Ember alternating ==\n\n", n)
	if verbose {
		for i := range n {
			fmt.Fprintf(out, "  #%-2d standalone %s first %s | ember %s  Server-Timing: %s\n",
				i, ms(r.standalone[i]), ms(r.firstDirect[i]), ms(r.ember[i]), r.timings[i])
			if i < len(r.notified) {
				fmt.Fprintf(out, "      --notify %s  Server-Timing: %s\n", ms(r.notified[i]), r.nTimings[i])
			}
		}
		fmt.Fprintln(out)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp90\tmin\tmax\t")
	row := func(name string, v []time.Duration) {
		s := &sample{lat: slices.Clone(v)}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", name, ms(s.pct(50)), ms(s.pct(90)), ms(s.pct(0)), ms(s.pct(100)))
	}
	row("standalone start-to-ready (exec → EMBER_SIM_READY)", r.standalone)
	row("standalone first request after ready (new conn)", r.firstDirect)
	row("through Ember: first response (send → body read)", r.ember)
	if len(r.notified) > 0 {
		row("through Ember, sim --notify: first response", r.notified)
	}
	for _, ph := range append(slices.Clone(r.phaseOrder), phaseGap, phaseAfterSlot) {
		v := r.phases[ph]
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x * float64(time.Millisecond))
		}
		name := "  Ember Server-Timing " + ph
		if ph == phaseGap || ph == phaseAfterSlot {
			name = "  " + ph
		}
		row(name, d)
	}
	tw.Flush()

	med := func(v []time.Duration) time.Duration { return (&sample{lat: slices.Clone(v)}).pct(50) }
	p90 := func(v []time.Duration) time.Duration { return (&sample{lat: slices.Clone(v)}).pct(90) }
	sr := med(r.standalone)
	// Overhead per iteration against the standalone median, so its
	// median and p90 describe Ember's spread.
	over := make([]time.Duration, n)
	overFirst := make([]time.Duration, n)
	for i, e := range r.ember {
		over[i] = e - sr - directWarm
		overFirst[i] = e - sr - med(r.firstDirect)
	}
	fmt.Fprintf(out, "\ncold-start overhead = Ember first response − standalone start-to-ready median (%s) − direct warm p50 (%s):\n", ms(sr), ms(directWarm))
	fmt.Fprintf(out, "  median %s, p90 %s (target ≤ %s): %s\n", ms(med(over)), ms(p90(over)), ms(targetColdStart), verdict(med(over) <= targetColdStart))
	fmt.Fprintf(out, "  (subtracting the standalone first request on a new connection, %s, instead: median %s, p90 %s)\n",
		ms(med(r.firstDirect)), ms(med(overFirst)), ms(p90(overFirst)))
	if len(r.notified) > 0 {
		overN := make([]time.Duration, len(r.notified))
		for i, e := range r.notified {
			overN[i] = e - sr - directWarm
		}
		fmt.Fprintf(out, "cold-start overhead with readiness notification (sim --notify, EMBER_READY_FD): median %s, p90 %s (target ≤ %s): %s\n",
			ms(med(overN)), ms(p90(overN)), ms(targetColdNotify), verdict(med(overN) <= targetColdNotify))
	}
	fmt.Fprintln(out)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

// gcTarget is the GC target the process runs with, for the machine line:
// SetGCPercent returns the current one (and is set back at once).
func gcTarget() string {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	if p < 0 {
		return "off"
	}
	if os.Getenv("GOGC") != "" {
		return fmt.Sprintf("GOGC=%d (from the environment)", p)
	}
	return fmt.Sprintf("GOGC=%d (ember's default)", p)
}
