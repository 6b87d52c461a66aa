// Command kube benchmarks Ember on Kubernetes against the Pod's own start,
// in one run, on the cluster scripts/kube-cluster.sh runs:
//
//	eval "$(scripts/kube-cluster.sh env /tmp/ember-kube)"
//	EMBER_TEST_POSTGRES=postgres://… go run ./bench/kube
//
// Ember runs as real processes: `ember serve --backend kubernetes
// --kube-network host` (mode "serve") and, when EMBER_TEST_POSTGRES is set,
// `ember controller` + `ember gateway` on a database of the bench's own
// (mode "gateway"). Each mode owns a namespace of the bench's own, deleted
// at the end with its Pods.
//
// (a) Cold start. A min-0 function of the sim image (idle timeout -idle)
// is called -iterations times per mode, the modes alternating; before
// each call the bench waits until the previous Pod is gone. A Pod watch
// opened before the first call stamps every event with the bench's own
// clock on arrival: the Pod's ADDED (created), the first event with the
// container running, and the first with the Ready condition true. The
// Pod's own start is ADDED → Ready as this watch sees it; Ember's overhead
// is its first response (send → body read) minus that. The container's
// startedAt (1 s resolution, from the kubelet) and Ember's Server-Timing
// phases are reported beside.
//
// (b) Warm path. A min-1 function per mode; a closed loop of -workers
// calls it through Ember and directly at its Pod's host-network address,
// the targets interleaved in -slices slices (ABBA…).
//
// Without EMBER_TEST_KUBECONFIG and EMBER_TEST_CONTAINERD it says so and
// exits 0.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/driver"
)

const predictBody = `{"echo":"bench"}`

// logLevel is Ember's --log-level (-log-level); its logs are printed when
// the bench fails.
var logLevel = "warn"

type options struct {
	iterations int
	idle       time.Duration
	workers    int
	duration   time.Duration
	slices     int
	ember      string
	image      string
	gateway    bool
	v          bool
}

func main() {
	var o options
	flag.IntVar(&o.iterations, "iterations", 8, "cold starts per mode")
	flag.DurationVar(&o.idle, "idle", time.Second, "the cold function's idle timeout (its Pod is deleted this long after the call)")
	flag.IntVar(&o.workers, "workers", 8, "closed-loop workers in (b)")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "closed-loop time per target and slice in (b)")
	flag.IntVar(&o.slices, "slices", 4, "alternating slices per target in (b)")
	flag.StringVar(&o.ember, "ember", "", "a prebuilt ember binary (default: go build ./cmd/ember)")
	flag.StringVar(&o.image, "image", "", "a sim image already in the node's containerd (default: build examples/sim and import it)")
	flag.BoolVar(&o.gateway, "gateway", true, "also measure ember controller + ember gateway (needs EMBER_TEST_POSTGRES)")
	flag.BoolVar(&o.v, "v", false, "print every cold start")
	flag.StringVar(&logLevel, "log-level", logLevel, "Ember's log level (its logs are printed when the bench fails)")
	flag.Parse()
	kc, sock := os.Getenv("EMBER_TEST_KUBECONFIG"), os.Getenv("EMBER_TEST_CONTAINERD")
	if kc == "" || sock == "" {
		fmt.Println(`bench/kube: skipped, no Kubernetes cluster: start one with scripts/kube-cluster.sh start /tmp/ember-kube, then eval "$(scripts/kube-cluster.sh env /tmp/ember-kube)" (exports EMBER_TEST_KUBECONFIG and EMBER_TEST_CONTAINERD)`)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, kc, sock); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kube:", err)
		os.Exit(1)
	}
}

// mode is one way of running Ember: its processes, its namespace, its
// Pod watch and its admin client.
type mode struct {
	name   string
	ns     string
	url    string
	key    string
	c      *client.Client
	procs  []*proc
	watch  *podWatch
	dropDB func()
}

func run(ctx context.Context, o options, kubeconfig, sock string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("EMBER_TEST_KUBECONFIG=%s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ember-kbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	la := loadavg()
	fmt.Printf("machine: %d CPUs, %s %s/%s; load average at the start: %s\n", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, la)

	emberBin := o.ember
	if emberBin == "" {
		emberBin = filepath.Join(tmp, "ember")
		if err := goBuild(emberBin, "./cmd/ember", false); err != nil {
			return err
		}
	}
	image := o.image
	if image == "" {
		if image, err = importSim(tmp, sock); err != nil {
			return err
		}
	}
	fmt.Printf("image %s, ember %s\n", image, emberBin)

	var modes []*mode
	defer func() {
		for _, m := range modes {
			m.close(cs)
		}
	}()
	serve, err := startServe(ctx, cs, tmp, emberBin, kubeconfig)
	if serve != nil {
		modes = append(modes, serve)
	}
	if err != nil {
		return err
	}
	if dsn := os.Getenv("EMBER_TEST_POSTGRES"); o.gateway && dsn != "" {
		gw, err := startRoles(ctx, cs, tmp, emberBin, kubeconfig, dsn)
		if gw != nil {
			modes = append(modes, gw)
		}
		if err != nil {
			return err
		}
	} else if o.gateway {
		fmt.Println("gateway mode: skipped, EMBER_TEST_POSTGRES is unset (scripts/postgres-test.sh prints one)")
	}

	for _, m := range modes {
		spec := fmt.Sprintf("name: kcold\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 0, max: 1, idle_timeout: %s}\n", image, o.idle)
		if _, err := m.c.Deploy(ctx, []byte(spec)); err != nil {
			return fmt.Errorf("%s: deploy kcold: %w", m.name, err)
		}
	}
	err = coldStarts(ctx, o, modes)
	if err == nil {
		err = warmPath(ctx, o, cs, modes, image)
	}
	if err != nil {
		for _, m := range modes {
			for i, p := range m.procs {
				l := p.log()
				fmt.Fprintf(os.Stderr, "--- %s process %d log (last 4000 bytes):\n%s\n", m.name, i, l[max(0, len(l)-4000):])
			}
		}
		return err
	}
	fmt.Printf("\nload average at the end: %s\n", loadavg())
	return nil
}

// proc is one Ember process.
type proc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func startProc(bin string, env []string, args ...string) (*proc, error) {
	p := &proc{logs: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newNamespace(ctx context.Context, cs kubernetes.Interface, prefix string) (string, error) {
	ns := prefix + "-" + randHex(3)
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return ns, nil
}

// startServe starts `ember serve --backend kubernetes --kube-network host`
// in a namespace of its own.
func startServe(ctx context.Context, cs kubernetes.Interface, tmp, bin, kubeconfig string) (*mode, error) {
	ns, err := newNamespace(ctx, cs, "kbench-serve")
	if err != nil {
		return nil, err
	}
	m := &mode{name: "serve", ns: ns}
	if m.watch, err = watchPods(ctx, cs, ns); err != nil {
		return m, err
	}
	addr, dir := freeAddr(), filepath.Join(tmp, "serve")
	p, err := startProc(bin, nil, "serve", "--addr", addr, "--data-dir", dir, "--tick", "100ms", "--log-level", logLevel,
		"--backend", "kubernetes", "--kube-network", "host", "--kubeconfig", kubeconfig, "--kube-namespace", ns)
	if err != nil {
		return m, err
	}
	m.procs = append(m.procs, p)
	m.url = "http://" + addr
	return m, m.ready(filepath.Join(dir, "admin.key"))
}

// startRoles starts `ember controller` and `ember gateway` on a database
// of their own, the controller's Pods in a namespace of their own.
func startRoles(ctx context.Context, cs kubernetes.Interface, tmp, bin, kubeconfig, admin string) (*mode, error) {
	dsn, err := newDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(ctx, cs, "kbench-gw")
	if err != nil {
		return nil, err
	}
	m := &mode{name: "gateway", ns: ns}
	if m.watch, err = watchPods(ctx, cs, ns); err != nil {
		return m, err
	}
	token := randHex(32)
	env := []string{"EMBER_CLUSTER_TOKEN=" + token, "EMBER_STORE=" + dsn}
	kube := []string{"--kubeconfig", kubeconfig, "--kube-namespace", ns, "--lease-name", "ember-kbench"}
	ctlAddr := freeAddr()
	ctl, err := startProc(bin, env, append([]string{"controller", "--addr", ctlAddr, "--data-dir", filepath.Join(tmp, "ctl"),
		"--node-name", "ctl", "--tick", "100ms", "--log-level", logLevel, "--backend", "kubernetes", "--kube-network", "host"}, kube...)...)
	if err != nil {
		return m, err
	}
	m.procs = append(m.procs, ctl)
	m.dropDB = func() { dropDatabase(admin, dsn) }
	if err := poll(30*time.Second, "controller /healthz", func() bool { return get("http://"+ctlAddr+"/healthz") == 200 }); err != nil {
		return m, fmt.Errorf("%w\n%s", err, ctl.log())
	}
	addr, dir := freeAddr(), filepath.Join(tmp, "gw")
	gw, err := startProc(bin, env, append([]string{"gateway", "--addr", addr, "--data-dir", dir, "--tick", "100ms", "--log-level", logLevel,
		"--node-name", "gw", "--backend", "kubernetes", "--kube-network", "host"}, kube...)...)
	if err != nil {
		return m, err
	}
	m.procs = append(m.procs, gw)
	m.url = "http://" + addr
	return m, m.ready(filepath.Join(dir, "admin.key"))
}

// ready waits for the API process's admin key and /readyz.
func (m *mode) ready(keyFile string) error {
	err := poll(60*time.Second, m.name+" ready", func() bool {
		if m.key == "" {
			if b, err := os.ReadFile(keyFile); err == nil {
				m.key = strings.TrimSpace(string(b))
			}
		}
		return m.key != "" && get(m.url+"/readyz") == 200
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, m.procs[len(m.procs)-1].log())
	}
	m.c = client.New(m.url, m.key)
	return nil
}

func (m *mode) close(cs kubernetes.Interface) {
	for i := len(m.procs) - 1; i >= 0; i-- {
		m.procs[i].stop()
	}
	if m.watch != nil {
		m.watch.stop()
	}
	ctx := context.Background()
	zero := int64(0)
	cs.CoreV1().Pods(m.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	poll(60*time.Second, "Pods of "+m.ns+" gone", func() bool {
		l, err := cs.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
	if err := cs.CoreV1().Namespaces().Delete(ctx, m.ns, metav1.DeleteOptions{}); err != nil {
		fmt.Fprintf(os.Stderr, "delete namespace %s: %v\n", m.ns, err)
	}
	if m.dropDB != nil {
		m.dropDB()
	}
}

func newDatabase(ctx context.Context, admin string) (string, error) {
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", fmt.Errorf("EMBER_TEST_POSTGRES: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("EMBER_TEST_POSTGRES: %w", err)
	}
	defer conn.Close(context.Background())
	name := "ember_kbench_" + randHex(4)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), nil
}

func dropDatabase(admin, dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return
	}
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
		c.Close(ctx)
	}
}

// podTimes is what the bench's Pod watch saw of one Pod, stamped with the
// bench's clock when each event arrived.
type podTimes struct {
	added, scheduled, running, ready, deleted time.Time
	startedAt                                 time.Time // the container's startedAt (kubelet, 1 s resolution)
	created                                   time.Time // metadata.creationTimestamp (API server, 1 s)
	function                                  string
	hostIP                                    string
	hostPort                                  int32
}

type podWatch struct {
	mu     sync.Mutex
	pods   map[string]*podTimes
	order  []string
	w      interface{ Stop() }
	done   chan struct{}
	broken error
}

func watchPods(ctx context.Context, cs kubernetes.Interface, ns string) (*podWatch, error) {
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watch pods in %s: %w", ns, err)
	}
	pw := &podWatch{pods: map[string]*podTimes{}, w: w, done: make(chan struct{})}
	go func() {
		defer close(pw.done)
		for ev := range w.ResultChan() {
			now := time.Now()
			p, ok := ev.Object.(*corev1.Pod)
			pw.mu.Lock()
			if !ok {
				pw.broken = fmt.Errorf("pod watch: %s %v", ev.Type, ev.Object)
				pw.mu.Unlock()
				continue
			}
			t := pw.pods[p.Name]
			if t == nil {
				t = &podTimes{added: now, created: p.CreationTimestamp.Time, function: p.Labels[driver.LabelFunction]}
				pw.pods[p.Name] = t
				pw.order = append(pw.order, p.Name)
			}
			if t.scheduled.IsZero() && p.Spec.NodeName != "" {
				t.scheduled = now
			}
			for _, c := range p.Status.ContainerStatuses {
				if r := c.State.Running; r != nil && t.running.IsZero() {
					t.running, t.startedAt = now, r.StartedAt.Time
				}
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && t.ready.IsZero() {
					t.ready = now
				}
			}
			if t.hostIP == "" && p.Status.PodIP != "" && len(p.Spec.Containers) > 0 && len(p.Spec.Containers[0].Ports) > 0 {
				t.hostIP, t.hostPort = p.Status.PodIP, p.Spec.Containers[0].Ports[0].HostPort
			}
			if ev.Type == "DELETED" {
				t.deleted = now
			}
			pw.mu.Unlock()
		}
	}()
	return pw, nil
}

func (pw *podWatch) stop() { pw.w.Stop(); <-pw.done }

// live is the number of Pods seen and not yet deleted.
func (pw *podWatch) live() int {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	n := 0
	for _, t := range pw.pods {
		if t.deleted.IsZero() {
			n++
		}
	}
	return n
}

// after returns the Pods first seen after t.
func (pw *podWatch) after(t time.Time) []podTimes {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []podTimes
	for _, name := range pw.order {
		if p := pw.pods[name]; p.added.After(t) {
			out = append(out, *p)
		}
	}
	return out
}

func (pw *podWatch) err() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.broken
}

// cold is one measured cold start.
type cold struct {
	first                time.Duration // send → body read
	podStart             time.Duration // watch: ADDED → Ready
	addedRunning         time.Duration // watch: ADDED → container running
	sendAdded, readyDone time.Duration // send → ADDED seen; Ready seen → body read
	startedAt            time.Duration // creationTimestamp → container startedAt (both 1 s resolution)
	timing               string
}

func (c cold) overhead() time.Duration { return c.first - c.podStart }

func coldStarts(ctx context.Context, o options, modes []*mode) error {
	fmt.Printf("\n== (a) cold start: %d per mode, modes alternating; idle timeout %s, the Pod gone before each call ==\n", o.iterations, o.idle)
	res := map[string][]cold{}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for i := range o.iterations {
		for j := range modes {
			m := modes[(i+j)%len(modes)] // ABBA-like: who goes first alternates
			if err := poll(90*time.Second, m.name+": no Pod left", func() bool { return m.watch.live() == 0 }); err != nil {
				return err
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", m.url+"/v1/run/kcold/predict", strings.NewReader(predictBody))
			req.Header.Set("Authorization", "Bearer "+m.key)
			req.Header.Set("Content-Type", "application/json")
			sent := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("%s: cold call %d: %w", m.name, i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done := time.Now()
			if resp.StatusCode != 200 || resp.Header.Get("Ember-Cold-Start") != "true" {
				return fmt.Errorf("%s: cold call %d: %d Ember-Cold-Start=%q %s", m.name, i, resp.StatusCode, resp.Header.Get("Ember-Cold-Start"), body)
			}
			// The Ready event can arrive at the bench after the answer did
			// (Ember probes the Pod itself); wait for it before reading.
			var pods []podTimes
			if err := poll(30*time.Second, m.name+": the cold Pod Ready on the watch", func() bool {
				pods = m.watch.after(sent)
				return len(pods) == 1 && !pods[0].ready.IsZero() && !pods[0].running.IsZero()
			}); err != nil {
				return fmt.Errorf("%w (%d Pods since the call)", err, len(pods))
			}
			p := pods[0]
			c := cold{
				first: done.Sub(sent), podStart: p.ready.Sub(p.added), addedRunning: p.running.Sub(p.added),
				sendAdded: p.added.Sub(sent), readyDone: done.Sub(p.ready), startedAt: p.startedAt.Sub(p.created),
				timing: resp.Header.Get("Server-Timing"),
			}
			res[m.name] = append(res[m.name], c)
			if o.v {
				fmt.Printf("  %s #%d: first %s, pod ADDED→Ready %s (→running %s), overhead %s; Server-Timing %s\n",
					m.name, i, ms(c.first), ms(c.podStart), ms(c.addedRunning), ms(c.overhead()), c.timing)
			}
		}
	}
	for _, m := range modes {
		if err := m.watch.err(); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp90\tmin\tmax\t")
	for _, m := range modes {
		cs := res[m.name]
		row := func(label string, f func(cold) time.Duration) {
			ds := make([]time.Duration, len(cs))
			for i, c := range cs {
				ds[i] = f(c)
			}
			slices.Sort(ds)
			fmt.Fprintf(tw, "%s: %s\t%s\t%s\t%s\t%s\t\n", m.name, label, ms(pct(ds, 50)), ms(pct(ds, 90)), ms(ds[0]), ms(ds[len(ds)-1]))
		}
		row("first response (send → body read)", func(c cold) time.Duration { return c.first })
		row("Pod's own start (watch ADDED → Ready)", func(c cold) time.Duration { return c.podStart })
		row("watch ADDED → container running", func(c cold) time.Duration { return c.addedRunning })
		row("Ember's overhead (first response − Pod's own start)", cold.overhead)
		row("  of which send → ADDED seen", func(c cold) time.Duration { return c.sendAdded })
		row("  of which Ready seen → body read", func(c cold) time.Duration { return c.readyDone })
		row("creationTimestamp → startedAt (1 s resolution)", func(c cold) time.Duration { return c.startedAt })
		for _, ph := range phaseNames(cs) {
			row("Server-Timing "+ph, func(c cold) time.Duration { return phase(c.timing, ph) })
		}
	}
	tw.Flush()
	fmt.Println("overhead < 0: Ember answered before the watch saw the Pod Ready (it probes the Pod itself, not waiting for the kubelet's status)")
	return nil
}

// phaseNames lists the Server-Timing entries in the order of the first
// cold start's header.
func phaseNames(cs []cold) []string {
	var names []string
	for _, part := range strings.Split(cs[0].timing, ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(part), ";"); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// phase reads one entry's dur (ms) from a Server-Timing header.
func phase(h, name string) time.Duration {
	for _, part := range strings.Split(h, ",") {
		fields := strings.Split(strings.TrimSpace(part), ";")
		if fields[0] != name {
			continue
		}
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(f), "dur="); ok {
				var d float64
				fmt.Sscan(v, &d)
				return time.Duration(d * float64(time.Millisecond))
			}
		}
	}
	return 0
}

// target is one warm path: a URL and its results.
type target struct {
	name, url, key string
	lat            []time.Duration
	n, errs        int
	took           time.Duration
}

func warmPath(ctx context.Context, o options, cs kubernetes.Interface, modes []*mode, image string) error {
	var targets []*target
	for _, m := range modes {
		spec := fmt.Sprintf("name: kwarm\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 1, max: 1, concurrency: 0}\n", image)
		if _, err := m.c.Deploy(ctx, []byte(spec)); err != nil {
			return fmt.Errorf("%s: deploy kwarm: %w", m.name, err)
		}
		since := time.Now().Add(-time.Hour)
		var addr string
		if err := poll(120*time.Second, m.name+": kwarm's Pod running with an address", func() bool {
			for _, p := range m.watch.after(since) {
				if p.function == "kwarm" && p.deleted.IsZero() && !p.running.IsZero() && p.hostIP != "" && p.hostPort != 0 {
					addr = net.JoinHostPort(p.hostIP, fmt.Sprint(p.hostPort))
				}
			}
			return addr != ""
		}); err != nil {
			return err
		}
		if err := poll(60*time.Second, m.name+": kwarm answers through Ember", func() bool {
			return call(http.DefaultClient, m.url+"/v1/run/kwarm/predict", m.key) == nil
		}); err != nil {
			return err
		}
		targets = append(targets,
			&target{name: m.name + " (through Ember)", url: m.url + "/v1/run/kwarm/predict", key: m.key},
			&target{name: m.name + " direct (Pod " + addr + ")", url: "http://" + addr + "/predict"})
	}
	fmt.Printf("\n== (b) warm path: one Pod per mode, closed loop of %d workers, %s per target × %d alternating slices ==\n", o.workers, o.duration, o.slices)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2 * o.workers, DisableCompression: true}}
	for _, t := range targets { // warm-up
		closedLoop(ctx, hc, t, o.workers, 500*time.Millisecond, false)
	}
	for s := range o.slices {
		order := slices.Clone(targets)
		if s%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range order {
			closedLoop(ctx, hc, t, o.workers, o.duration, true)
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp90\tp99\tmax\treq/s\terrors\t")
	for i := 0; i+1 < len(targets); i += 2 {
		e, d := targets[i], targets[i+1]
		for _, t := range []*target{e, d} {
			slices.Sort(t.lat)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t\n", t.name, ms(pct(t.lat, 50)), ms(pct(t.lat, 90)), ms(pct(t.lat, 99)), ms(t.lat[len(t.lat)-1]), t.rate(), t.errs)
		}
		fmt.Fprintf(tw, "added (Ember − direct)\t%s\t%s\t%s\t\t×%.2f\t\t\n", ms(pct(e.lat, 50)-pct(d.lat, 50)), ms(pct(e.lat, 90)-pct(d.lat, 90)), ms(pct(e.lat, 99)-pct(d.lat, 99)), e.rate()/d.rate())
	}
	tw.Flush()
	// Pods are counted by the API server, not by Ember: a min 1, max 1
	// function should have had exactly one.
	for _, m := range modes {
		n := 0
		for _, p := range m.watch.after(time.Time{}) {
			if p.function == "kwarm" {
				n++
			}
		}
		fmt.Printf("%s: kwarm (min 1, max 1) had %d Pod(s) created during the run\n", m.name, n)
	}
	return nil
}

func (t *target) rate() float64 { return float64(t.n) / t.took.Seconds() }

func closedLoop(ctx context.Context, hc *http.Client, t *target, workers int, d time.Duration, record bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			for time.Now().Before(end) && ctx.Err() == nil {
				s := time.Now()
				if err := call(hc, t.url, t.key); err != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(s))
			}
			if record {
				mu.Lock()
				t.lat = append(t.lat, lat...)
				t.n += len(lat)
				t.errs += errs
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if record {
		t.took += time.Since(start)
	}
}

func call(hc *http.Client, url, key string) error {
	req, _ := http.NewRequest("POST", url, strings.NewReader(predictBody))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// poll checks cond every 20 ms until it holds or d has passed.
func poll(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func goBuild(out, pkg string, static bool) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// importSim builds examples/sim static and imports it into the node's
// containerd as ember-sim:<digest prefix> (as the e2e tests do).
func importSim(tmp, sock string) (string, error) {
	bin := filepath.Join(tmp, "sim")
	if err := goBuild(bin, "./examples/sim", true); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	name := "ember-sim:" + hex.EncodeToString(sum[:6])
	tool := exec.Command("go", "run", "./scripts/ociimage", "-name", name, "-add", bin+":/sim:0755",
		"-entrypoint", "/sim", "-o", filepath.Join(tmp, "image.tar"), "-containerd", sock)
	if out, err := tool.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ociimage %s: %w\n%s", name, err, out)
	}
	return name, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
