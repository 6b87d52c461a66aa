// Command text benchmarks text classification on the built-in ONNX runtime
// with dynamic batching on and off, in one run:
//
//	go run ./bench/text
//
// It writes a DistilBERT-sized classifier (6 layers, hidden 768, 12 heads,
// 3072 intermediate, random seeded weights, bert-base-uncased's tokenizer;
// ~265 MB) to a temp dir (or uses -model DIR), loads it twice in this
// process behind the ONNX worker's real HTTP handler (the handler `ember
// worker onnx` serves), once without batching and once with batch
// {max_size: 16, max_delay: 5ms}, and drives each with 1, 4 and 16
// closed-loop clients posting {"text": ...} (short review-like sentences,
// 8–40 tokens). Cells alternate between the two servers (off, on, off,
// on…) so drifting machine load hits both alike. Reported per cell:
// requests/s, p50 and p99 latency, and the mean batch size (texts per ONNX
// Runtime run). The cold-start split of loading each model (read, session
// creation, warm-up) is printed first. Then (-cold N, default 3; 0 skips)
// it generates a DistilBERT-sized embeddings model too, starts a real
// Ember server in this process (-pool sets its onnx-pool) with a
// text-classification and an embeddings function, and prints the
// cold-start phases Ember records for each (GET
// /v1/functions/{name}/instances), first start and median of the rest.
//
// Timing numbers depend on the machine: run it on a quiet one, and check
// the load average it prints at start and end.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/textmodel"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
	"github.com/ember-run/ember/internal/worker"
)

var sentences = []string{
	"I love this movie!",
	"This is the worst film I have ever seen.",
	"The plot was thin but the acting carried it to a satisfying end.",
	"Absolutely brilliant, funny and moving from the first scene to the credits.",
	"Not great, not terrible.",
	"I would not recommend it to anyone who values their evening, their money or their patience.",
	"A masterpiece.",
	"The soundtrack is lovely, the dialogue clumsy, and the ending arrives far too late to matter.",
	"Meh.",
	"Two hours of my life I will never get back, though the cinematography was stunning.",
	"Charming cast, clever script, and a twist I did not see coming at all.",
	"Boring.",
}

func main() {
	// The onnx driver runs os.Executable() as `worker onnx`: be that worker
	// (the cold-start part runs a real Ember server in this process).
	if len(os.Args) > 2 && os.Args[1] == "worker" && os.Args[2] == "onnx" {
		os.Exit(worker.RunONNX(context.Background(), os.Args[3:], os.Stdout, os.Stderr))
	}
	// As `ember serve` does (its onnx workers, above, keep Go's default):
	// the in-process server runs with the server's GC target (the whole
	// process does, load generator included).
	app.SetGCDefault(os.Getenv)
	modelDir := flag.String("model", "", "model directory (default: generate a DistilBERT-sized one in a temp dir)")
	dur := flag.Duration("duration", 10*time.Second, "measured time per cell")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured load before each cell")
	maxSize := flag.Int("max-size", 16, "batch.max_size of the batching server")
	maxDelay := flag.Duration("max-delay", 5*time.Millisecond, "batch.max_delay of the batching server")
	threads := flag.Int("threads", 0, "ONNX Runtime intra-op threads (0: one per core)")
	clientsFlag := flag.String("clients", "1,4,16", "concurrent clients per cell")
	cache := flag.String("cache-dir", os.Getenv("EMBER_CACHE_DIR"), "where ONNX Runtime is pulled (default <user cache>/ember)")
	cold := flag.Int("cold", 3, "cold starts per task through a real Ember server (0: skip)")
	pool := flag.Int("pool", 0, "onnx-pool of that server")
	flag.Parse()
	if err := run(*modelDir, *dur, *warm, *maxSize, *maxDelay, *threads, *clientsFlag, *cache, *cold, *pool); err != nil {
		fmt.Fprintln(os.Stderr, "bench/text:", err)
		os.Exit(1)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

type server struct {
	name  string
	url   string
	model *textmodel.Model
	close func()
}

func serve(dir string, opts worker.TaskOptions, threads int, name string) (*server, map[string]float64, error) {
	var m *textmodel.Model
	load := func(ctx context.Context, task, dir string, o worker.TaskOptions) (worker.Model, error) {
		var err error
		m, err = textmodel.Load(dir, o.TextOptions(task, threads))
		return m, err
	}
	srv := worker.NewServer(slog.New(slog.DiscardHandler), load, worker.Config{MaxBytes: 1 << 20, Warmup: worker.WarmupOn}, time.Now())
	srv.RuntimeLoaded(time.Now())
	t0 := time.Now()
	if err := srv.Load(context.Background(), worker.TaskClassification, dir, opts); err != nil {
		return nil, nil, err
	}
	total := time.Since(t0)
	st := m.Stats()
	split := map[string]float64{"read": ms(st.Read), "session": ms(st.Session), "total (read + session + warm-up)": ms(total)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln) // ends with Close below
	return &server{name: name, url: "http://" + ln.Addr().String() + "/predict", model: m, close: sync.OnceFunc(func() {
		hs.Close()
		srv.Close()
	})}, split, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type cell struct {
	rps, p50, p99, batch float64
	errs                 int
}

// drive runs n closed-loop clients against url for warm+dur and measures
// the last dur.
func drive(url string, m *textmodel.Model, n int, warm, dur time.Duration) cell {
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	post := func(i int) (time.Duration, error) {
		body := fmt.Sprintf(`{"text": %q}`, sentences[i%len(sentences)])
		t0 := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return time.Since(t0), nil
	}
	stopAt := time.Now().Add(warm)
	var wg sync.WaitGroup
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(stopAt); i += n {
				post(i)
			}
		}()
	}
	wg.Wait()
	runs0, rows0 := m.Runs()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	start := time.Now()
	stopAt = start.Add(dur)
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for i := c; time.Now().Before(stopAt); i += n {
				d, err := post(i)
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat, errs = append(lat, mine...), errs+bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	runs, rows := m.Runs()
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))])
	}
	c := cell{rps: float64(len(lat)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99), errs: errs}
	if runs > runs0 {
		c.batch = float64(rows-rows0) / float64(runs-runs0)
	}
	return c
}

func run(modelDir string, dur, warm time.Duration, maxSize int, maxDelay time.Duration, threads int, clientsFlag, cache string, cold, pool int) error {
	var clients []int
	for _, f := range strings.Split(clientsFlag, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			return fmt.Errorf("-clients: bad count %q", f)
		}
		clients = append(clients, n)
	}
	cacheDir, err := models.DefaultCacheDir(cache)
	if err != nil {
		return err
	}
	os.Setenv("ORT_DISABLE_TELEMETRY", "1")
	lib, err := (&models.Client{}).RuntimeLibrary(context.Background(), cacheDir, os.Getenv("EMBER_ORT_LIB"), os.Stderr)
	if err != nil {
		return err
	}
	if err := ocr.InitRuntime(lib); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ember-bench-text-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	gen := func(name string, labels []string) (string, error) {
		dir := filepath.Join(tmp, name)
		c := bertgen.DistilBERT()
		c.Labels = labels
		t0 := time.Now()
		if err := bertgen.Write(dir, c, bertgen.Options{MaxLength: 512}); err != nil {
			return "", err
		}
		fmt.Printf("generated a DistilBERT-sized %s model in %s (%.1f s)\n", name, dir, time.Since(t0).Seconds())
		return dir, nil
	}
	if modelDir == "" {
		if modelDir, err = gen("classifier", []string{"NEGATIVE", "POSITIVE"}); err != nil {
			return err
		}
	}
	fmt.Printf("machine: %d CPUs, %s/%s, ONNX Runtime %s, load average at start: %s\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, ocr.RuntimeVersion(), loadavg())
	off, offSplit, err := serve(modelDir, worker.TaskOptions{}, threads, "off")
	if err != nil {
		return err
	}
	defer off.close()
	on, onSplit, err := serve(modelDir, worker.TaskOptions{BatchMaxSize: maxSize, BatchMaxDelayMS: ms(maxDelay)}, threads, "on")
	if err != nil {
		return err
	}
	defer on.close()
	fmt.Printf("\ncold start, model load (ms): batching off %v; batching on %v\n", fmtSplit(offSplit), fmtSplit(onSplit))

	fmt.Printf("\nwarm classification, %v per cell after %v warm-up; batching on = batch {max_size: %d, max_delay: %v}\n\n", dur, warm, maxSize, maxDelay)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tbatching\treq/s\tp50 ms\tp99 ms\ttexts/run\terrors\t")
	res := map[string]cell{}
	for _, n := range clients {
		for _, s := range []*server{off, on} {
			c := drive(s.url, s.model, n, warm, dur)
			res[fmt.Sprint(s.name, n)] = c
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%d\t\n", n, s.name, c.rps, c.p50, c.p99, c.batch, c.errs)
		}
	}
	tw.Flush()
	fmt.Println()
	for _, n := range clients {
		a, b := res[fmt.Sprint("off", n)], res[fmt.Sprint("on", n)]
		if a.rps > 0 {
			fmt.Printf("%2d clients: throughput on/off %.2f×, p99 on/off %.2f×\n", n, b.rps/a.rps, b.p99/max(a.p99, 1e-9))
		}
	}
	if cold > 0 {
		// The embeddings model is the same encoder without the head.
		embedDir, err := gen("embeddings", nil)
		if err != nil {
			return err
		}
		// Only the cold part's server loads these: free the warm ones first.
		off.close()
		on.close()
		tasks := []coldTask{{"sentiment", worker.TaskClassification, modelDir}, {"embed", worker.TaskEmbeddings, embedDir}}
		if err := benchCold(context.Background(), os.Stdout, tasks, cold, pool, cacheDir); err != nil {
			return err
		}
	}
	fmt.Printf("load average at end: %s\n", loadavg())
	return nil
}

func fmtSplit(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
