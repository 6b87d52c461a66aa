package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/container"
	"github.com/ember-run/ember/internal/driver/gpu"
	"github.com/ember-run/ember/internal/driver/kube"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/spec"
)

// runtimes is the registry of spec runtimes: it picks the driver for each
// start and checks at deploy that the chosen driver can run a spec.
type runtimes struct {
	process   *process.Driver
	onnx      *onnx.Driver
	container *container.Driver
	// kube runs every runtime's instances as Pods with --backend
	// kubernetes (nil: local backend).
	kube *kube.Driver
	// gpus hands GPUs to process and container instances (nil: --gpus
	// off, resources.gpu only meters).
	gpus   *gpu.Allocator
	byName map[string]driver.Driver // spec runtime → its driver
	// hardware reports whether the price catalogue knows a hardware class
	// (nil: not checked); an unknown one would be metered at $0.
	hardware func(class string) bool
}

func (r *runtimes) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	d, ok := r.byName[cmp.Or(s.Runtime, spec.RuntimeProcess)]
	if !ok {
		return nil, &driver.StartError{Reason: fmt.Sprintf("unknown runtime %q", s.Runtime)}
	}
	if r.gpus == nil || s.Resources.GPU.Count == 0 || !gpuRuntime(s.Runtime) {
		return d.Start(ctx, s)
	}
	// Whole GPUs for the instance's life: taken before the start (none
	// free is a start failure that names the holders, retried with the
	// start backoff like any failed start), given back when it exits.
	owner := s.Function + "/" + s.InstanceID
	devs, err := r.gpus.Acquire(gpu.Request{Owner: owner, Class: strings.ToLower(s.Resources.GPU.Type),
		Count: s.Resources.GPU.Count, Shared: s.Resources.GPU.Shared})
	if err != nil {
		return nil, &driver.StartError{Reason: "resources.gpu: " + err.Error(), Err: err}
	}
	s.GPUDevices = make([]string, len(devs))
	for i, dv := range devs {
		s.GPUDevices[i] = dv.ID()
	}
	inst, err := d.Start(ctx, s)
	if err != nil {
		r.gpus.Release(owner)
		return nil, err
	}
	// Owned by the instance: it ends when the instance has exited,
	// whether stopped or crashed, which every driver reports by Done.
	go func() {
		<-inst.Done()
		r.gpus.Release(owner)
	}()
	return inst, nil
}

// Release has the drivers that keep loaded instances (the onnx loaded
// pool) stop fn's (driver.Releaser).
func (r *runtimes) Release(fn string) { r.onnx.Release(fn) }

// Prewarms: the spec's runtime driver can prepare an instance ahead
// (containers), and the spec asks for no GPU: its devices are assigned at
// start, so an instance prepared ahead cannot carry them.
func (r *runtimes) Prewarms(s driver.StartSpec) bool {
	p, ok := r.byName[cmp.Or(s.Runtime, spec.RuntimeProcess)].(driver.Prewarmer)
	return ok && s.Resources.GPU.Count == 0 && p.Prewarms(s)
}

func (r *runtimes) Prewarm(ctx context.Context, s driver.StartSpec) error {
	p, ok := r.byName[cmp.Or(s.Runtime, spec.RuntimeProcess)].(driver.Prewarmer)
	if !ok || s.Resources.GPU.Count > 0 {
		return fmt.Errorf("runtime %q: instances cannot be prepared ahead", s.Runtime)
	}
	return p.Prewarm(ctx, s)
}

func (r *runtimes) Discard(ctx context.Context, s driver.StartSpec) {
	if p, ok := r.byName[cmp.Or(s.Runtime, spec.RuntimeProcess)].(driver.Prewarmer); ok {
		p.Discard(ctx, s)
	}
}

// gpuRuntime: the runtimes whose instances are given GPUs (onnx workers
// run on CPU; their resources.gpu only meters).
func gpuRuntime(rt string) bool {
	rt = cmp.Or(rt, spec.RuntimeProcess)
	return rt == spec.RuntimeProcess || rt == spec.RuntimeContainer
}

// Validate is the runtime-specific half of deploy validation (the spec's
// own, runtime-neutral half has run): the runtime must be one this server
// has, and its driver must accept the StartSpec the spec would start. The
// error is a *spec.ValidationError naming each field, like the spec's own.
func (r *runtimes) Validate(f *spec.Function) error {
	d, ok := r.byName[f.Runtime]
	if !ok {
		return &spec.ValidationError{Function: f.Name, Errs: []*spec.FieldError{{Field: "runtime",
			Reason: fmt.Sprintf("unknown runtime %q (supported: %s)", f.Runtime, strings.Join(slices.Sorted(maps.Keys(r.byName)), ", "))}}}
	}
	var errs []*spec.FieldError
	if f.Runtime == spec.RuntimeONNX && !models.ONNXBuilt && r.kube == nil { // on Kubernetes the worker image has it
		errs = append(errs, &spec.FieldError{Field: "runtime", Reason: models.ErrNoONNX.Error()})
	}
	if hw := f.HardwareClass(); r.hardware != nil && !r.hardware(hw) {
		errs = append(errs, &spec.FieldError{Field: "resources.gpu.type",
			Reason: fmt.Sprintf("unknown hardware class %q: the price catalogue has no offer for it (ember prices lists the known ones; add one in <data-dir>/prices.yaml)", hw)})
	}
	if n := f.GPUCount(); n > 0 && r.gpus != nil && gpuRuntime(f.Runtime) {
		if err := r.gpus.Check(f.HardwareClass(), n); err != nil {
			errs = append(errs, &spec.FieldError{Field: "resources.gpu",
				Reason: err.Error() + " (ember serve --gpus off meters resources.gpu without GPUs)"})
		}
	}
	if v, ok := d.(driver.Validator); ok {
		var ve *spec.ValidationError
		if err := specErrors(f.Name, v.Validate(instance.StartSpecFor(f, 0, ""))); errors.As(err, &ve) {
			errs = append(errs, ve.Errs...)
		} else if err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return &spec.ValidationError{Function: f.Name, Errs: errs}
	}
	return nil
}

// specErrors turns a driver's joined *driver.FieldError values into the
// spec's error type, so a deploy reports them as it reports the spec's own.
func specErrors(fn string, err error) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	ve := &spec.ValidationError{Function: fn}
	for _, e := range errs {
		var fe *driver.FieldError
		if errors.As(e, &fe) {
			ve.Errs = append(ve.Errs, &spec.FieldError{Field: fe.Field, Reason: fe.Reason})
		} else {
			ve.Errs = append(ve.Errs, &spec.FieldError{Field: "runtime", Reason: e.Error()})
		}
	}
	return ve
}

var (
	_ driver.Driver    = (*runtimes)(nil)
	_ driver.Releaser  = (*runtimes)(nil)
	_ driver.Validator = (*process.Driver)(nil)
	_ driver.Validator = (*onnx.Driver)(nil)
	_ driver.Validator = (*container.Driver)(nil)
	_ driver.Validator = (*kube.Driver)(nil)
	_ driver.Validator = kubeONNX{}
	_ driver.Lister    = (*runtimes)(nil)
	_ driver.Adopter   = (*runtimes)(nil)
)

// newRuntimes builds the drivers. Instances start from a minimal
// environment (process.BaseEnv plus --inherit-env), never the server's
// whole one, and read the secrets their specs name from secrets.
func newRuntimes(cfg config.Config, logger *slog.Logger, guard *process.Guard, secrets process.SecretSource) (*runtimes, error) {
	proc := process.New(logger.With("component", "driver"), process.Options{Guard: guard,
		Env: process.BaseEnv(os.Environ(), cfg.InheritEnv), Secrets: secrets})
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate the ember binary for onnx workers: %w", err)
	}
	if cfg.Backend == "kubernetes" {
		return newKubeRuntimes(cfg, logger, proc, secrets)
	}
	on := onnx.New(proc, logger.With("component", "onnx"), onnx.Options{
		Executable: exe, CacheDir: cfg.Cache(), ORTLib: cfg.ORTLib, PoolSize: cfg.ONNXPool,
		Threads: cfg.ONNXThreads, Loaded: cfg.ONNXLoaded,
	})
	ctr, err := newContainers(cfg, logger.With("component", "container"), secrets)
	if err != nil {
		return nil, err
	}
	r := newRegistry(proc, on)
	r.container = ctr
	r.gpus = newGPUs(cfg, logger.With("component", "gpu"))
	r.byName[spec.RuntimeContainer] = ctr
	return r, nil
}

// newKubeRuntimes runs every runtime as Pods (--backend kubernetes):
// container functions run their image, process functions need one (the
// kube driver refuses them at deploy without), onnx functions run
// --kube-worker-image in worker mode through the onnx driver, whose
// pre-started pool is then a set of generic worker Pods that a start
// specialises (POST /load) and relabels as the function's (Fission's pool
// manager). The local GPU allocator is off: the scheduler hands out
// nvidia.com/gpu. What earlier runs left is serve's to delete
// (cleanupKube) or a new leader's to adopt (reclaim).
func newKubeRuntimes(cfg config.Config, logger *slog.Logger, proc *process.Driver, secrets process.SecretSource) (*runtimes, error) {
	cs, _, ns, err := kube.Connect(cfg.Kubeconfig, cfg.KubeNamespace)
	if err != nil {
		return nil, fmt.Errorf("backend kubernetes: %w", err)
	}
	kd, err := kube.New(logger.With("component", "kube"), kube.Options{Client: cs, Namespace: ns,
		Network: cfg.KubeNetwork, WorkerImage: cfg.KubeWorkerImage, Models: cfg.KubeModels,
		AllowHostPaths: cfg.ContainerAllowHostPaths, Secrets: secrets})
	if err != nil {
		return nil, err
	}
	on := onnx.New(kd, logger.With("component", "onnx"), onnx.Options{
		Executable: kube.WorkerExecutable, CacheDir: kube.WorkerCacheDir, Host: "0.0.0.0",
		PoolSize: cfg.ONNXPool, Threads: cfg.ONNXThreads, Loaded: cfg.ONNXLoaded,
		// A pooled Pod has no resources or volumes of its own.
		Poolable: func(s driver.StartSpec) bool { return s.Resources == (driver.Resources{}) && len(s.Volumes) == 0 },
	})
	// The container driver stays for what app reaches through it (cog
	// file links); it starts nothing here and its engine is not asked.
	ctr, err := container.New(logger.With("component", "container"), container.Options{Host: cfg.ContainerHost, PublicURL: publicURL(cfg)})
	if err != nil {
		return nil, err
	}
	r := kubeRegistry(kd, proc, on, ctr)
	logger.Info("instances run as Pods", "namespace", ns, "network", cfg.KubeNetwork)
	return r, nil
}

// cleanupKube deletes the Pods a previous life of `ember serve` left, as
// the container driver's Cleanup does: a single server owns its
// namespace. Only serve calls it: a gateway or a controller starting
// beside a leader would delete the Pods that leader serves, and a new
// leader adopts them instead (reclaim).
func (r *runtimes) cleanupKube(logger *slog.Logger) {
	if r.kube == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := r.kube.Cleanup(ctx)
	if err != nil {
		logger.Warn("cannot delete pods left by an earlier run", "namespace", r.kube.Namespace(), "err", err)
	}
	if n > 0 {
		logger.Info("deleted pods left by an earlier run", "count", n, "namespace", r.kube.Namespace())
	}
}

// adopts reports whether the instances can outlive this process and be
// handed to a next leader (Pods): a controller that stops leaves them
// running for the next leader to adopt rather than stopping them. The
// local backend's process and onnx instances die with their server, so
// they are stopped.
func (r *runtimes) adopts() bool { return r.kube != nil }

// awaitAdopted probes an adopted instance of s before it is served (the
// kube driver's own readiness loop); the local backend adopts nothing.
func (r *runtimes) awaitAdopted(ctx context.Context, in driver.Instance, s driver.StartSpec) error {
	if r.kube == nil {
		return fmt.Errorf("adopted %v: the local backend adopts nothing", in)
	}
	return r.kube.AwaitAdopted(ctx, in, s)
}

// kubeRegistry maps every runtime to the kube driver.
func kubeRegistry(kd *kube.Driver, proc *process.Driver, on *onnx.Driver, ctr *container.Driver) *runtimes {
	return &runtimes{process: proc, onnx: on, container: ctr, kube: kd, byName: map[string]driver.Driver{
		spec.RuntimeProcess:   kd,
		spec.RuntimeContainer: kd,
		spec.RuntimeONNX:      kubeONNX{Driver: on, kube: kd},
	}}
}

// kubeONNX runs onnx functions as worker Pods: the onnx driver (over the
// kube driver) starts and pools the workers and says which tasks and
// models they serve, the kube driver what a Pod needs.
type kubeONNX struct {
	*onnx.Driver
	kube *kube.Driver
}

func (k kubeONNX) Validate(s driver.StartSpec) error {
	return errors.Join(k.Driver.Validate(s), k.kube.Validate(s))
}

// List and Adopt reach the kube driver's Pods, so that a leader can
// reclaim them (driver.Reclaim on the registry); the local backend has
// nothing to list.
func (r *runtimes) List(ctx context.Context) ([]driver.Listed, error) {
	if r.kube == nil {
		return nil, nil
	}
	return r.kube.List(ctx)
}

func (r *runtimes) Adopt(ctx context.Context, l driver.Listed) (driver.Instance, error) {
	if r.kube == nil {
		return nil, fmt.Errorf("adopt %s: the local backend adopts nothing", l.Handle)
	}
	return r.kube.Adopt(ctx, l)
}

// closeKube releases the kube driver's watches; its Pods keep running.
func (r *runtimes) closeKube() {
	if r.kube != nil {
		r.kube.Close()
	}
}

func newRegistry(proc *process.Driver, on *onnx.Driver) *runtimes {
	return &runtimes{process: proc, onnx: on, byName: map[string]driver.Driver{
		spec.RuntimeProcess: proc,
		spec.RuntimeONNX:    on,
	}}
}

// newContainers builds the container driver and removes the containers a
// previous life of this server left (killed before it could stop them).
// An engine that does not answer is no error: only container functions
// need one, and their starts say so.
func newContainers(cfg config.Config, logger *slog.Logger, secrets process.SecretSource) (*container.Driver, error) {
	var ulimits []container.Ulimit
	for _, v := range cfg.ContainerUlimits {
		u, err := container.ParseUlimit(v)
		if err != nil {
			return nil, fmt.Errorf("container-ulimit: %w", err)
		}
		ulimits = append(ulimits, u)
	}
	owner, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d, err := container.New(logger, container.Options{
		Host: cfg.ContainerHost, Network: cfg.ContainerNetwork, Ulimits: ulimits,
		OCIRuntime: cfg.ContainerOCIRuntime, GPUDriver: cfg.ContainerGPUDriver, AllowHostPaths: cfg.ContainerAllowHostPaths,
		Owner: owner, Secrets: secrets, PublicURL: publicURL(cfg),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		logger.Debug("no container engine; runtime: container functions cannot start", "host", d.Host(), "err", err)
		return d, nil
	}
	n, err := d.Cleanup(ctx)
	if err != nil {
		logger.Warn("cannot remove containers left by an earlier run", "err", err)
	}
	if n > 0 {
		logger.Info("removed containers left by an earlier run", "count", n, "host", d.Host())
	}
	return d, nil
}

// newGPUs reads the GPU inventory once, at start, and returns the
// allocator over it; nil for --gpus off. A machine without nvidia-smi has
// no GPUs (said once, at info); lines nvidia-smi printed that do not parse
// are warned about and left out.
func newGPUs(cfg config.Config, logger *slog.Logger) *gpu.Allocator {
	var inv gpu.Inventory = gpu.SMI{}
	switch {
	case cfg.GPUs == "off":
		return nil
	case strings.HasPrefix(cfg.GPUs, "file:"):
		inv = gpu.File{Path: strings.TrimPrefix(cfg.GPUs, "file:")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devs, err := inv.GPUs(ctx)
	why := ""
	switch {
	case errors.Is(err, gpu.ErrNoSMI):
		why = err.Error()
		logger.Info("no GPUs: functions with resources.gpu are refused at deploy (--gpus off to meter them without GPUs)", "reason", err)
	case err != nil && len(devs) == 0:
		why = err.Error()
		logger.Warn("no GPUs: the inventory failed", "err", err)
	case err != nil:
		logger.Warn("GPU inventory: lines left out", "err", err)
	}
	for _, d := range devs {
		logger.Info("GPU", "index", d.Index, "uuid", d.UUID, "name", d.Name, "memory_mib", d.MemoryMiB, "class", d.Class)
	}
	return gpu.NewAllocator(devs, why)
}

// preparer fetches an onnx function's model and the ONNX Runtime library
// at deploy, so no cold start pays for a download, then warms the pool.
type preparer struct {
	cfg    config.Config
	rt     *runtimes
	logger *slog.Logger
	mu     sync.Mutex // one download at a time
}

func (p *preparer) Prepare(ctx context.Context, f *spec.Function) error {
	if p.rt.kube != nil {
		// The node's kubelet pulls images, the worker Pod its model; the
		// pool's generic worker Pods start once an onnx function exists.
		if f.Runtime == spec.RuntimeONNX {
			p.rt.onnx.Warm()
		}
		return nil
	}
	if f.Runtime == spec.RuntimeContainer && p.rt.container != nil {
		// Pull at deploy, with progress in the server log, so no cold
		// start waits for a registry.
		progress := &logWriter{logger: p.logger.With("function", f.Name, "image", f.Image)}
		if err := p.rt.container.EnsureImage(ctx, f.Image, progress); err != nil {
			return fmt.Errorf("image %s: %w", f.Image, err)
		}
		return nil
	}
	if f.Runtime != spec.RuntimeONNX {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	progress := &logWriter{logger: p.logger.With("function", f.Name)}
	c := &models.Client{}
	if _, err := c.RuntimeLibrary(ctx, p.cfg.Cache(), p.cfg.ORTLib, progress); err != nil {
		return fmt.Errorf("onnx runtime: %w", err)
	}
	if _, err := c.Pull(ctx, f.Model, p.cfg.Cache(), progress); err != nil {
		return fmt.Errorf("model %s: %w", f.Model, err)
	}
	p.rt.onnx.Warm()
	return nil
}

// logWriter turns progress lines into log records.
type logWriter struct {
	logger *slog.Logger
}

func (w *logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			w.logger.Info("fetch", "progress", line)
		}
	}
	return len(b), nil
}

var _ io.Writer = (*logWriter)(nil)

// startGuard starts the helper that kills instances' process groups if the
// server dies (process.Guard); nil, with a warning, when there is none.
func startGuard(cfg config.Config, logger *slog.Logger) *process.Guard {
	if len(cfg.GuardCommand) == 0 {
		return nil
	}
	g, err := process.StartGuard(cfg.GuardCommand, logger.With("component", "guard"))
	if err != nil {
		logger.Warn("no instance guard: if the server is killed, processes that instances started may outlive it (the instances themselves still die)", "err", err)
		return nil
	}
	return g
}

// RunGuard is `ember worker guard`: the helper's side of process.Guard.
func RunGuard(stdin io.Reader) error {
	process.IgnoreStopSignals()
	return process.RunGuard(stdin, process.KillGroup)
}

// publicURL is the server's address as links in answers give it: the
// listen address, with loopback for an unspecified host (":8080",
// "0.0.0.0:8080").
func publicURL(cfg config.Config) string {
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return scheme + "://" + cfg.Addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
