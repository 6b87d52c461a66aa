// Command container benchmarks container functions through Ember against
// the container engine alone, in one run, on this machine:
//
//	DOCKER_HOST=unix:///run/podman/podman.sock go run ./bench/container
//
// (a) Cold start: a fresh min=0 container function is called through
// Ember (send → full first response, the container created and started on
// the caller's time) and, interleaved (ABBA), the same image is run by the
// engine alone through the same Docker Engine API: create → start → poll
// /health until 200 → the same POST /predict, timed from create to that
// response. Both use the same host configuration (network mode, OCI
// runtime, ulimits, dropped capabilities), so the difference is Ember's
// overhead. The engine-alone run also reports where its time goes
// (create, start, ready, first response).
//
// With -prewarm, a third target joins the interleaving: the same call
// through a second Ember (its own data dir) run with --container-prewarm,
// timed once the function's container has been created ahead (the engine
// lists it, created, not started), so the cold start skips the engine's
// create. The first Ember runs with prewarming off, so "through Ember"
// stays the create-on-the-caller's-time path.
//
// (b) Warm path: one ready container is called through Ember
// (POST /v1/run/<fn>/predict) and directly at its published address, in
// alternating slices with one shared client.
//
// The image is examples/sim built static (CGO_ENABLED=0) into a FROM
// scratch image with `podman build` or `docker build` (no registry
// needed), or -image names one already on the engine. Ember runs
// in-process. Without an engine answering, it says so and exits 0.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	mobyclient "github.com/moby/moby/client"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/driver"
	ctrdriver "github.com/ember-run/ember/internal/driver/container"
)

// targetOverhead is the goal for Ember's cold-start overhead.
const targetOverhead = 5 * time.Millisecond

const predictBody = `{"echo":"bench"}`

type options struct {
	host       string
	image      string
	network    string
	ociRuntime string
	ulimits    string
	iterations int
	warm       int
	slices     int
	skipWarm   bool
	skipCold   bool
	prewarm    bool
}

func main() {
	// As `ember serve` does: the in-process server runs with the GC target
	// the server runs with (the whole process does, load generator included).
	app.SetGCDefault(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/container:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench/container", flag.ContinueOnError)
	fs.StringVar(&o.host, "host", "", "engine endpoint (default: $DOCKER_HOST, /var/run/docker.sock, Podman's socket)")
	fs.StringVar(&o.image, "image", "", "image of examples/sim already on the engine (default: build one)")
	fs.StringVar(&o.network, "network", "host", "container network for both targets: host or bridge")
	fs.StringVar(&o.ociRuntime, "oci-runtime", "", "the engine's OCI runtime, e.g. runc (default: the engine's)")
	fs.StringVar(&o.ulimits, "ulimit", "", "ulimits for both targets, e.g. nofile=1024:1024,nproc=1024:1024")
	fs.IntVar(&o.iterations, "iterations", 10, "cold starts per target")
	fs.IntVar(&o.warm, "warm", 2000, "warm requests per target")
	fs.IntVar(&o.slices, "slices", 10, "alternating slices the warm requests are split into")
	fs.BoolVar(&o.skipWarm, "skip-warm", false, "skip (b)")
	fs.BoolVar(&o.skipCold, "skip-cold", false, "skip (a)")
	fs.BoolVar(&o.prewarm, "prewarm", false, "add to (a) cold starts through an Ember with --container-prewarm (container created ahead)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.network != ctrdriver.NetworkHost && o.network != ctrdriver.NetworkBridge {
		return o, fmt.Errorf("-network: want host or bridge (got %q)", o.network)
	}
	if o.iterations < 1 || o.warm < o.slices || o.slices < 1 {
		return o, errors.New("-iterations ≥ 1, -slices ≥ 1 and -warm ≥ -slices")
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	o.host = cmp.Or(o.host, ctrdriver.DefaultHost(os.Getenv))
	eng, err := mobyclient.New(mobyclient.WithHost(o.host))
	if err != nil {
		return err
	}
	defer eng.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = eng.Ping(pctx, mobyclient.PingOptions{})
	cancel()
	if err != nil {
		fmt.Fprintf(out, "SKIP: no container engine answers at %s (%v); set DOCKER_HOST or -host\n", o.host, err)
		return nil
	}
	if o.ulimits != "" {
		for _, v := range strings.Split(o.ulimits, ",") {
			if _, err := ctrdriver.ParseUlimit(v); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "engine %s, network %s, OCI runtime %q, %d CPUs, load %s\n", o.host, o.network, o.ociRuntime, runtime.NumCPU(), loadavg())

	tmp, err := os.MkdirTemp("", "ember-bench-container-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.image == "" {
		if o.image, err = buildImage(ctx, tmp); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "image %s\n", o.image)

	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(tmp, "data")
	cfg.LogLevel = "warn"
	cfg.Auth = false // the data path, not API keys
	cfg.Grace = 5 * time.Second
	cfg.GPUs = "off"
	cfg.ContainerHost = o.host
	cfg.ContainerNetwork = o.network
	cfg.ContainerOCIRuntime = o.ociRuntime
	if o.ulimits != "" {
		cfg.ContainerUlimits = strings.Split(o.ulimits, ",")
	}
	cfg.ContainerPrewarm = 0 // the create stays on the caller's time
	srv, err := startEmber(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	var pw *prewarmed
	if o.prewarm {
		pcfg := cfg
		pcfg.DataDir = filepath.Join(tmp, "data-prewarm")
		pcfg.ContainerPrewarm = 16
		psrv, err := startEmber(ctx, pcfg)
		if err != nil {
			return err
		}
		defer psrv.stop()
		owner, err := filepath.Abs(pcfg.DataDir)
		if err != nil {
			return err
		}
		pw = &prewarmed{url: psrv.url, owner: owner, eng: eng}
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, DisableCompression: true}}
	ec := client.New(srv.url, "")
	ec.HTTP = hc
	alone := &engineAlone{eng: eng, o: o, hc: hc}

	if !o.skipCold {
		if err := benchCold(ctx, out, o, ec, hc, srv.url, alone, pw); err != nil {
			return err
		}
	}
	if !o.skipWarm {
		if err := benchWarm(ctx, out, o, ec, hc, srv.url); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "load average at the end: %s\n", loadavg())
	return nil
}

// buildImage builds examples/sim static into a FROM scratch image, tagged
// by its content, with podman or docker (whichever is installed).
func buildImage(ctx context.Context, dir string) (string, error) {
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "sim"), "./examples/sim")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build examples/sim (run from the repository root): %v\n%s", err, b)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "sim"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	ref := "localhost/ember-bench-sim:" + hex.EncodeToString(sum[:6])
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\nCOPY sim /sim\nENTRYPOINT [\"/sim\"]\n"), 0o600); err != nil {
		return "", err
	}
	cli := "podman"
	if _, err := exec.LookPath(cli); err != nil {
		cli = "docker"
	}
	if b, err := exec.CommandContext(ctx, cli, "build", "-q", "-t", ref, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s build (or pass -image): %v\n%s", cli, err, b)
	}
	return ref, nil
}

type ember struct {
	url  string
	stop func()
}

func startEmber(ctx context.Context, cfg config.Config) (*ember, error) {
	logger := app.NewLogger(cfg, io.Discard)
	srvCtx, cancel := context.WithCancel(ctx)
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.Serve(srvCtx, cfg, logger, func(a string) { addrs <- a }) }()
	select {
	case a := <-addrs:
		return &ember{url: "http://" + a, stop: func() { cancel(); <-done }}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("ember: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		return nil, errors.New("ember did not start within 60s")
	}
}

func spec(name, image, scaling string) []byte {
	return fmt.Appendf(nil, "name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nhealth: /health\nscaling: %s\n", name, image, scaling)
}

// post sends the predict request and reads the whole answer.
func post(ctx context.Context, hc *http.Client, url string) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(predictBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("bench")) {
		return nil, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return resp.Header, nil
}

// engineAlone runs the image through the Docker Engine API, as Ember's
// driver configures it, without Ember.
type engineAlone struct {
	eng *mobyclient.Client
	o   options
	hc  *http.Client
}

type phases struct{ create, start, ready, first time.Duration }

func (a *engineAlone) coldStart(ctx context.Context, i int) (phases, error) {
	var p phases
	port, err := freePort()
	if err != nil {
		return p, err
	}
	inPort := port
	cfg := &container.Config{Image: a.o.image, Env: []string{"SIM_HOST=0.0.0.0"}, Labels: map[string]string{"ember.bench": "1"}}
	hc := &container.HostConfig{NetworkMode: container.NetworkMode(a.o.network), Runtime: a.o.ociRuntime,
		CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"}}
	if a.o.network == ctrdriver.NetworkBridge {
		inPort = ctrdriver.DefaultPort
		np, _ := network.PortFrom(uint16(inPort), network.TCP)
		cfg.ExposedPorts = network.PortSet{np: {}}
		hc.PortBindings = network.PortMap{np: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}}
	}
	cfg.Env = append(cfg.Env, "PORT="+strconv.Itoa(inPort))
	if a.o.ulimits != "" {
		for _, v := range strings.Split(a.o.ulimits, ",") {
			u, _ := ctrdriver.ParseUlimit(v)
			hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
		}
	}
	addr := "http://127.0.0.1:" + strconv.Itoa(port)
	t0 := time.Now()
	created, err := a.eng.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: cfg, HostConfig: hc,
		Name: fmt.Sprintf("ember-bench-alone-%d-%d", os.Getpid(), i)})
	if err != nil {
		return p, fmt.Errorf("create: %w", err)
	}
	defer a.eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, mobyclient.ContainerRemoveOptions{Force: true})
	p.create = time.Since(t0)
	if _, err := a.eng.ContainerStart(ctx, created.ID, mobyclient.ContainerStartOptions{}); err != nil {
		return p, fmt.Errorf("start: %w", err)
	}
	p.start = time.Since(t0)
	// The tightest loop a user would write: probe /health until 200.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := t0.Add(60 * time.Second)
	for {
		resp, err := probe.Get(addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("container not ready within 60s: %v", err)
		}
		time.Sleep(200 * time.Microsecond) // the probe's own cadence
	}
	p.ready = time.Since(t0)
	if _, err := post(ctx, a.hc, addr+"/predict"); err != nil {
		return p, err
	}
	p.first = time.Since(t0)
	return p, nil
}

// prewarmed is the second Ember of -prewarm: the one that creates a
// function's container ahead.
type prewarmed struct {
	url   string
	owner string // its data dir, the owner label of its containers
	eng   *mobyclient.Client
}

// containers lists fn's containers of this Ember and their states.
func (p *prewarmed) containers(ctx context.Context, fn string) ([]string, error) {
	list, err := p.eng.ContainerList(ctx, mobyclient.ContainerListOptions{All: true,
		Filters: mobyclient.Filters{}.Add("label", driver.LabelFunction+"="+fn).Add("label", ctrdriver.LabelOwner+"="+p.owner)})
	if err != nil {
		return nil, err
	}
	var states []string
	for _, c := range list.Items {
		states = append(states, string(c.State))
	}
	return states, nil
}

// waitContainers polls until fn's containers of this Ember are want
// (their states, e.g. ["created"]; nil for none).
func (p *prewarmed) waitContainers(ctx context.Context, fn string, want []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, err := p.containers(ctx, fn)
		if err != nil {
			return err
		}
		if slices.Equal(got, want) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // polling the engine with a deadline
	}
	return fmt.Errorf("%s: containers not %v within 30s", fn, want)
}

func benchCold(ctx context.Context, out io.Writer, o options, ec *client.Client, hc *http.Client, base string, alone *engineAlone, pw *prewarmed) error {
	var viaEmber, viaPrewarm, direct []time.Duration
	var ph []phases
	emberPhases := map[string][]time.Duration{}
	prewarmPhases := map[string][]time.Duration{}
	through := func(i int) error {
		return coldThrough(ctx, o, ec, hc, base, fmt.Sprintf("cold%d", i), nil, &viaEmber, emberPhases)
	}
	var pec *client.Client
	if pw != nil {
		pec = client.New(pw.url, "")
		pec.HTTP = hc
	}
	throughPrewarmed := func(i int) error {
		return coldThrough(ctx, o, pec, hc, pw.url, fmt.Sprintf("prewarm%d", i), pw, &viaPrewarm, prewarmPhases)
	}
	for i := range o.iterations {
		steps := []func() error{
			func() error { return through(i) },
			func() error {
				p, err := alone.coldStart(ctx, i)
				ph, direct = append(ph, p), append(direct, p.first)
				return err
			},
		}
		if pw != nil {
			steps = append(steps, func() error { return throughPrewarmed(i) })
		}
		// ABBA for two targets; with three, each leads in turn.
		if pw != nil {
			k := i % len(steps)
			steps = append(steps[k:], steps[:k]...)
		} else if i%2 == 1 {
			slices.Reverse(steps)
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "\n(a) cold start, first response from zero, %d each, interleaved\n", o.iterations)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp90\t")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, ms(pct(ds, 50)), ms(pct(ds, 90)))
	}
	row("through Ember", viaEmber)
	if pw != nil {
		row("through Ember, prewarmed (created ahead)", viaPrewarm)
	}
	row("engine alone (create→start→200)", direct)
	pick := func(f func(phases) time.Duration) []time.Duration {
		var out []time.Duration
		for _, p := range ph {
			out = append(out, f(p))
		}
		return out
	}
	row("  engine alone: create", pick(func(p phases) time.Duration { return p.create }))
	row("  engine alone: start", pick(func(p phases) time.Duration { return p.start - p.create }))
	row("  engine alone: ready", pick(func(p phases) time.Duration { return p.ready - p.start }))
	row("  engine alone: first response", pick(func(p phases) time.Duration { return p.first - p.ready }))
	for _, n := range slices.Sorted(maps.Keys(emberPhases)) {
		row("  Ember Server-Timing: "+n, emberPhases[n])
	}
	for _, n := range slices.Sorted(maps.Keys(prewarmPhases)) {
		row("  Ember prewarmed Server-Timing: "+n, prewarmPhases[n])
	}
	tw.Flush()
	over := pct(viaEmber, 50) - pct(direct, 50)
	fmt.Fprintf(out, "Ember's cold-start overhead (median − median): %s ms (target ≤ %s ms: %s)\n", ms(over), ms(targetOverhead), verdict(over <= targetOverhead))
	if pw != nil {
		fmt.Fprintf(out, "prewarming saves (median − median): %s ms of %s ms\n", ms(pct(viaEmber, 50)-pct(viaPrewarm, 50)), ms(pct(viaEmber, 50)))
	}
	return nil
}

// coldThrough deploys a min=0 function as name, calls it once from zero
// and records the time to the full response and its Server-Timing
// phases; with pw, the call waits until the function's container has been
// created ahead. It deletes the function and waits until it is gone.
func coldThrough(ctx context.Context, o options, ec *client.Client, hc *http.Client, base, name string, pw *prewarmed,
	ds *[]time.Duration, phases map[string][]time.Duration) error {
	if _, err := ec.Deploy(ctx, spec(name, o.image, "{min: 0, max: 1, idle_timeout: 1h}")); err != nil {
		return err
	}
	if pw != nil {
		if err := pw.waitContainers(ctx, name, []string{"created"}); err != nil {
			return err
		}
	}
	t0 := time.Now()
	h, err := post(ctx, hc, base+"/v1/run/"+name+"/predict")
	d := time.Since(t0)
	if err != nil {
		return err
	}
	if h.Get(api.HeaderColdStart) != "true" {
		return fmt.Errorf("%s: the first request was not a cold start", name)
	}
	st := h.Get(api.HeaderServerTiming)
	if pw != nil && !strings.Contains(st, "prewarmed;") {
		return fmt.Errorf("%s: the cold start did not use the prepared container (Server-Timing %q)", name, st)
	}
	*ds = append(*ds, d)
	for part := range strings.SplitSeq(st, ",") {
		n, v, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if f, err := strconv.ParseFloat(v, 64); ok && err == nil {
			phases[n] = append(phases[n], time.Duration(f*float64(time.Millisecond)))
		}
	}
	if err := ec.Delete(ctx, name); err != nil {
		return err
	}
	if err := waitGone(ctx, ec, name); err != nil {
		return err
	}
	if pw != nil {
		return pw.waitContainers(ctx, name, nil)
	}
	return nil
}

func benchWarm(ctx context.Context, out io.Writer, o options, ec *client.Client, hc *http.Client, base string) error {
	const name = "warm"
	if _, err := ec.Deploy(ctx, spec(name, o.image, "{min: 1, max: 1}")); err != nil {
		return err
	}
	defer ec.Delete(context.WithoutCancel(ctx), name)
	var ins []api.Instance
	for deadline := time.Now().Add(60 * time.Second); ; {
		var err error
		ins, err = ec.Instances(ctx, name)
		if err != nil {
			return err
		}
		if len(ins) == 1 && ins[0].State == "ready" && ins[0].Addr != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm instance not ready within 60s: %+v", ins)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	targets := []struct{ name, url string }{
		{"through Ember", base + "/v1/run/" + name + "/predict"},
		{"container directly", "http://" + ins[0].Addr + "/predict"},
	}
	lat := make([][]time.Duration, len(targets))
	for i := range 50 { // connections and caches warm on both
		for _, t := range targets {
			if _, err := post(ctx, hc, t.url); err != nil {
				return fmt.Errorf("warm-up %d: %w", i, err)
			}
		}
	}
	per := o.warm / o.slices
	for s := range o.slices {
		order := []int{0, 1}
		if s%2 == 1 {
			order = []int{1, 0}
		}
		for _, k := range order {
			for range per {
				t0 := time.Now()
				if _, err := post(ctx, hc, targets[k].url); err != nil {
					return err
				}
				lat[k] = append(lat[k], time.Since(t0))
			}
		}
	}
	fmt.Fprintf(out, "\n(b) warm path, %d sequential requests each, %d alternating slices\n", per*o.slices, o.slices)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp90\tp99\t")
	for k, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.name, us(pct(lat[k], 50)), us(pct(lat[k], 90)), us(pct(lat[k], 99)))
	}
	tw.Flush()
	fmt.Fprintf(out, "Ember's warm-path overhead (median − median): %s µs\n", us(pct(lat[0], 50)-pct(lat[1], 50)))
	return nil
}

// waitGone waits until the function's instances are stopped, so the next
// iteration does not share the CPUs with a container shutting down.
func waitGone(ctx context.Context, ec *client.Client, name string) error {
	deadline := time.Now().Add(30 * time.Second)
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
	return fmt.Errorf("%s: instances still running 30s after delete", name)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
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
