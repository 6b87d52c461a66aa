// Package container runs instances as OCI containers through the Docker
// Engine API, so the same code drives Docker and Podman's compatible service
// (`podman system service`). It keeps the process driver's contract: $PORT,
// a readiness probe (TCP, then the health path), the container's
// stdout/stderr into the instance's log sink, SIGTERM then SIGKILL on stop,
// and start failures that carry the container's last lines (and "OOM
// killed" when the memory limit ended it).
//
// Isolation is not optional: containers are never privileged, drop every
// capability, run with no-new-privileges, get the spec's CPU and memory as
// engine limits, and mount only named volumes or host paths on the
// operator's allow-list (never the engine socket or Ember's data dir).
//
// Containers carry Ember's labels (driver.Labels) plus an owner label naming
// this server's data dir. Containers outlive a server killed by SIGKILL;
// Cleanup, run when the server starts, removes every container of this
// owner, so none is leaked past the next start.
package container

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/container/cog"
)

// Network modes.
const (
	// NetworkBridge gives each container its own network namespace and
	// publishes its port on 127.0.0.1 at a port Ember picks: what Docker
	// users expect. The image listens on spec `port` (default 8080).
	NetworkBridge = "bridge"
	// NetworkHost shares the host's network: the image must listen on
	// $PORT, a loopback port Ember picks. No NAT hop, fastest start.
	NetworkHost = "host"
)

// Phases a container start reports besides driver.PhaseListening and
// driver.PhaseReady, in order.
const (
	PhaseImage   = "image"   // the image is present on the engine
	PhaseCreated = "created" // the container exists
	PhaseStarted = "started" // the engine started it
)

// GPU device drivers: how a container is given its GPUs.
const (
	// GPUNvidia asks the engine's "nvidia" device driver (the NVIDIA
	// Container Toolkit) for the GPUs by UUID: `docker run --gpus`.
	GPUNvidia = "nvidia"
	// GPUCDI names the GPUs as CDI devices (nvidia.com/gpu=<uuid>), for
	// engines set up with a CDI spec (`nvidia-ctk cdi generate`).
	GPUCDI = "cdi"
)

// LabelOwner names the server that started a container (its data dir), so
// that Cleanup removes this server's leftovers and no other's.
const LabelOwner = "ember.run/owner"

// DefaultPort is the port an image listens on in bridge mode when the spec
// names none.
const DefaultPort = 8080

// Options configures a Driver.
type Options struct {
	// Host is the engine endpoint, e.g. unix:///var/run/docker.sock.
	// "" picks DefaultHost(os.Getenv).
	Host string
	// Network is NetworkBridge (default) or NetworkHost.
	Network string
	// Ulimits are set on every container ("nofile=1024:1024"); a host
	// without CAP_SYS_RESOURCE for the engine needs nofile and nproc
	// within its own limits. Nil: the engine's defaults.
	Ulimits []Ulimit
	// GPUDriver is GPUNvidia (default) or GPUCDI: how the GPUs the
	// allocator assigned (StartSpec.GPUDevices) are requested.
	GPUDriver string
	// OCIRuntime names the engine's OCI runtime ("runc"); "" = engine default.
	OCIRuntime string
	// AllowHostPaths lists host directories that specs may mount (each
	// a prefix); empty refuses every host_path.
	AllowHostPaths []string
	// Owner is the value of LabelOwner on this server's containers.
	Owner string
	// Secrets resolves StartSpec.SecretEnv at each start.
	Secrets SecretSource
	// StopTimeout is how long a container has between SIGTERM and
	// SIGKILL when the stop's ctx has no deadline. Default 10s.
	StopTimeout time.Duration
	// PublicURL is Ember's address as callers reach it
	// (http://127.0.0.1:8080): protocol cog file outputs become links
	// under it (GET /v1/files/{id}, served by CogFiles).
	PublicURL string
	// ProbeInitial and ProbeMax bound the readiness probe's backoff, as in
	// the process driver (defaults 200µs and 3ms).
	ProbeInitial, ProbeMax time.Duration
}

// Ulimit is one resource limit, as `docker run --ulimit name=soft:hard`.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// ParseUlimit reads "name=soft:hard" (or "name=n" for soft = hard).
func ParseUlimit(v string) (Ulimit, error) {
	name, val, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return Ulimit{}, fmt.Errorf("ulimit %q: want name=soft:hard, e.g. nofile=1024:1024", v)
	}
	soft, hard, two := strings.Cut(val, ":")
	if !two {
		hard = soft
	}
	s, err1 := strconv.ParseInt(soft, 10, 64)
	h, err2 := strconv.ParseInt(hard, 10, 64)
	if err1 != nil || err2 != nil || s < 0 || h < s {
		return Ulimit{}, fmt.Errorf("ulimit %q: want name=soft:hard with 0 ≤ soft ≤ hard", v)
	}
	return Ulimit{Name: name, Soft: s, Hard: h}, nil
}

// SecretSource resolves a secret's value by name (store/sqlite).
type SecretSource = driver.SecretSource

// DefaultHost is the engine endpoint when none is configured: $DOCKER_HOST,
// then Docker's socket, then Podman's rootful and rootless sockets, the
// first that exists; Docker's socket path when none does.
func DefaultHost(getenv func(string) string) string {
	if h := getenv("DOCKER_HOST"); h != "" {
		return h
	}
	candidates := []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
	if x := getenv("XDG_RUNTIME_DIR"); x != "" {
		candidates = append(candidates, filepath.Join(x, "podman", "podman.sock"))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return "unix://" + p
		}
	}
	return "unix://" + candidates[0]
}

// Driver starts instances as containers. It is safe for concurrent use.
type Driver struct {
	logger *slog.Logger
	opts   Options
	cli    *client.Client
	probe  *http.Client

	// cogFiles keeps protocol cog file outputs, served as links.
	cogFiles *cog.Files

	ports driver.Ports // host ports handed to live instances

	mu     sync.Mutex      // guards the following
	images map[string]bool // images seen present on the engine (deploy pulled or a start inspected them)
	// cogSchemas is each cog function's input schema, as its latest
	// ready instance declared it.
	cogSchemas map[string]*cog.Schema
	// prewarmed are containers created ahead (Prewarm), by instance id,
	// until a Start takes one over or Discard removes it.
	prewarmed map[string]*created
}

// maxKnownImages bounds the images remembered as present; past it the
// memory starts over (a start then inspects once more).
const maxKnownImages = 1024

// imageKnown reports whether image was seen present, so a cold start need
// not ask the engine again: a removed image still fails the create, which
// Start reports like a missing image.
func (d *Driver) imageKnown(image string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.images[image]
}

func (d *Driver) setImageKnown(image string, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !known {
		delete(d.images, image)
		return
	}
	if d.images == nil || len(d.images) >= maxKnownImages {
		d.images = map[string]bool{}
	}
	d.images[image] = true
}

// New returns a Driver for the engine at opts.Host. It does not contact
// the engine: a server with no container functions needs none.
func New(logger *slog.Logger, opts Options) (*Driver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.Host = cmp.Or(opts.Host, DefaultHost(os.Getenv))
	opts.Network = cmp.Or(opts.Network, NetworkBridge)
	if opts.Network != NetworkBridge && opts.Network != NetworkHost {
		return nil, fmt.Errorf("container network: want %s or %s (got %q)", NetworkBridge, NetworkHost, opts.Network)
	}
	opts.GPUDriver = cmp.Or(opts.GPUDriver, GPUNvidia)
	if opts.GPUDriver != GPUNvidia && opts.GPUDriver != GPUCDI {
		return nil, fmt.Errorf("container GPU driver: want %s or %s (got %q)", GPUNvidia, GPUCDI, opts.GPUDriver)
	}
	opts.StopTimeout = cmp.Or(opts.StopTimeout, 10*time.Second)
	opts.ProbeInitial = cmp.Or(opts.ProbeInitial, 200*time.Microsecond)
	opts.ProbeMax = max(cmp.Or(opts.ProbeMax, 3*time.Millisecond), opts.ProbeInitial)
	cli, err := client.New(client.WithHost(opts.Host))
	if err != nil {
		return nil, fmt.Errorf("container engine %s: %w", opts.Host, err)
	}
	return &Driver{
		logger: logger, opts: opts, cli: cli,
		probe: &http.Client{
			Timeout:       time.Second,
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		cogFiles: cog.NewFiles(opts.PublicURL, cog.DefaultFilesBytes, cog.DefaultFilesTTL), cogSchemas: map[string]*cog.Schema{}, prewarmed: map[string]*created{},
	}, nil
}

// CogFiles serves GET /v1/files/{id}: the file outputs of protocol cog
// functions. The id is the capability (128 random bits).
func (d *Driver) CogFiles() http.Handler { return d.cogFiles }

// InputSchema is the input schema (JSON Schema) of cog function fn, as
// its image's /openapi.json declares it; false until an instance of fn
// has been ready.
func (d *Driver) InputSchema(fn string) (json.RawMessage, bool) {
	d.mu.Lock()
	s := d.cogSchemas[fn]
	d.mu.Unlock()
	if s == nil {
		return nil, false
	}
	return s.Raw, true
}

// ValidateInput checks input against cog function fn's schema: nil when
// it fits or no schema is known yet, else an error naming every field at
// fault ("invalid input: input.prompt: required").
func (d *Driver) ValidateInput(fn string, input json.RawMessage) error {
	d.mu.Lock()
	s := d.cogSchemas[fn]
	d.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Check(input)
}

// Host is the engine endpoint in use.
func (d *Driver) Host() string { return d.opts.Host }

// Close releases the engine client.
func (d *Driver) Close() error { return d.cli.Close() }

// Ping reports whether the engine answers.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("container engine %s does not answer: %w", d.opts.Host, err)
	}
	return nil
}

// Cleanup removes every container labelled as this owner's: what a server
// killed before it could stop its instances left running. It returns how
// many it removed.
func (d *Driver) Cleanup(ctx context.Context) (int, error) {
	list, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", LabelOwner+"="+d.opts.Owner)})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	n := 0
	for _, c := range list.Items {
		if _, ok := driver.ParseLabels(c.Labels); !ok {
			continue
		}
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// EnsureImage makes image present on the engine, pulling it if it is not
// and writing the pull's progress to progress. Deploy calls it, so no
// caller's cold start ever waits for a pull.
func (d *Driver) EnsureImage(ctx context.Context, image string, progress io.Writer) error {
	if _, err := d.cli.ImageInspect(ctx, image); err == nil {
		d.setImageKnown(image, true)
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s on %s: %w", image, d.opts.Host, err)
	}
	fmt.Fprintf(progress, "pulling %s\n", image)
	resp, err := d.cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return fmt.Errorf("pull %s: %w", image, err)
		}
		if m.Error != nil {
			return fmt.Errorf("pull %s: %s", image, m.Error.Message)
		}
		switch {
		case m.Status != "" && m.Progress != nil && m.Progress.Total > 0:
			fmt.Fprintf(progress, "%s %s %d/%d\n", m.ID, m.Status, m.Progress.Current, m.Progress.Total)
		case m.Status != "":
			fmt.Fprintf(progress, "%s %s\n", m.ID, m.Status)
		}
	}
	return nil
}

// Start creates and starts a container for s and returns once its health
// check passes. On failure the container is removed and a
// *driver.StartError says why (exit status or OOM kill, last lines).
func (d *Driver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	if err := d.Validate(s); err != nil {
		return nil, &driver.StartError{Reason: strings.ReplaceAll(err.Error(), "\n", "; "), Err: err}
	}
	inst := &Instance{d: d, function: s.Function, id: s.InstanceID, onPhase: s.OnPhase,
		done: make(chan struct{}), follow: make(chan struct{}), logs: driver.NewLogTail(200), memory: s.Resources.MemoryBytes}
	inst.out = &driver.TailWriter{Tail: inst.logs, W: s.Output}

	// The image must be present: deploy pulled it. A missing image is a
	// start failure, never a pull on the caller's time. An image seen
	// present before is not asked about again (a round trip to the engine
	// on every cold start); if it was removed since, the create fails
	// and says so the same way.
	if !d.imageKnown(s.Image) {
		if _, err := d.cli.ImageInspect(ctx, s.Image); err != nil {
			reason := fmt.Sprintf("image %s: cannot inspect on %s", s.Image, d.opts.Host)
			if cerrdefs.IsNotFound(err) {
				reason = missingImage(s.Image)
			}
			return nil, &driver.StartError{Reason: reason, Err: err}
		}
		d.setImageKnown(s.Image, true)
	}
	inst.phase(PhaseImage)

	secrets, err := d.resolveSecrets(ctx, s.SecretEnv)
	if err != nil {
		return nil, err
	}
	c := d.takePrewarmed(s, secrets)
	if c != nil {
		inst.phase(driver.PhasePrewarmed)
	} else if c, err = d.create(ctx, s, secrets); err != nil {
		return nil, err
	}
	created := c.id
	inst.hostPort = c.hostPort
	inst.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.hostPort))
	inst.containerID = created
	inst.phase(PhaseCreated)
	hostPort := c.hostPort
	logger := d.logger.With("function", s.Function, "instance", s.InstanceID, "container", shortID(created))

	// The start runs on its own context: an abandoned start still
	// removes what it created (below).
	if _, err := d.cli.ContainerStart(ctx, created, client.ContainerStartOptions{}); err != nil {
		d.remove(created)
		d.releasePort(hostPort)
		return nil, &driver.StartError{Reason: "start container: " + err.Error(), Err: err}
	}
	inst.phase(PhaseStarted)
	if s.Protocol == cog.Protocol {
		if inst.cog, err = cog.Listen(inst.addr, d.cogFiles, logger); err != nil {
			d.remove(created)
			d.releasePort(hostPort)
			return nil, &driver.StartError{Reason: err.Error(), Err: err}
		}
	}
	go inst.run()

	err = d.waitReady(ctx, inst, s)
	if err != nil {
		inst.startLogs()
		inst.kill()
		<-inst.done
		var se *driver.StartError
		if errors.As(err, &se) {
			se.Tail = inst.Tail(20)
		}
		logger.Debug("container failed to start", "err", err)
		return nil, err
	}
	// The engine's streams for this container (its log, the exit wait)
	// open a moment after ready rather than with the first request, which
	// is usually on its way now: on a small machine the engine serving
	// them competes with that request for the CPU (bench/container). The
	// log replays from the container's start, so nothing is lost.
	time.AfterFunc(engineStreamsDelay, inst.startLogs)
	if inst.cog != nil {
		d.startCog(ctx, inst, s.Function, logger)
	}
	logger.Debug("container ready", "phases", inst.Phases())
	return inst, nil
}

// created is a container that exists on the engine, not started: its
// configuration, and the host port it was given.
type created struct {
	id       string
	hostPort int
	cfg      *container.Config
	hc       *container.HostConfig
}

// create reserves the instance's port and creates its container (and its
// named volumes). On failure nothing is left behind.
func (d *Driver) create(ctx context.Context, s driver.StartSpec, secrets []string) (*created, error) {
	hostPort, err := d.reservePort()
	if err != nil {
		return nil, &driver.StartError{Reason: "no free port", Err: err}
	}
	cfg, hc, err := d.configs(s, secrets, hostPort)
	if err != nil {
		d.releasePort(hostPort)
		return nil, &driver.StartError{Reason: err.Error(), Err: err}
	}
	for _, v := range s.Volumes {
		if v.Name != "" {
			if err := d.ensureVolume(ctx, v.Name, s.Function); err != nil {
				d.releasePort(hostPort)
				return nil, &driver.StartError{Reason: err.Error(), Err: err}
			}
		}
	}
	// The create runs to its end even when ctx ends first: an engine that
	// has the request may still create the container after the caller
	// gave up, and then nothing would know of it until the next server
	// start. Waiting for the answer (tens of milliseconds) lets a
	// cancelled create remove what it made.
	if err := ctx.Err(); err != nil {
		d.releasePort(hostPort)
		return nil, &driver.StartError{Reason: "not created: " + err.Error(), Err: err}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	res, err := d.cli.ContainerCreate(cctx, client.ContainerCreateOptions{
		Config: cfg, HostConfig: hc, Name: containerName(s),
	})
	unanswered := cctx.Err() != nil // read before cancel, which would set it
	cancel()
	if err == nil && ctx.Err() != nil {
		d.remove(res.ID)
		d.releasePort(hostPort) // after the remove: the port is published until then
		return nil, &driver.StartError{Reason: "create container: " + ctx.Err().Error(), Err: ctx.Err()}
	}
	if err != nil {
		if unanswered && !cerrdefs.IsConflict(err) {
			// No answer in time: the engine may yet create it. (A
			// conflict names someone else's container: never removed.)
			d.remove(containerName(s))
		}
		d.releasePort(hostPort)
		if cerrdefs.IsNotFound(err) {
			d.setImageKnown(s.Image, false)
			return nil, &driver.StartError{Reason: missingImage(s.Image), Err: err}
		}
		return nil, &driver.StartError{Reason: "create container: " + err.Error(), Err: err}
	}
	return &created{id: res.ID, hostPort: hostPort, cfg: cfg, hc: hc}, nil
}

// createTimeout bounds the engine's create of one container, which goes
// on when the caller's context ends (see create).
const createTimeout = 30 * time.Second

// maxPrewarmed bounds the containers created ahead that the driver keeps
// (the instance manager keeps far fewer: --prewarm-containers).
const maxPrewarmed = 1024

// ErrNotPrewarmable is returned by Prewarm for a spec whose container
// cannot be created ahead.
var ErrNotPrewarmable = errors.New("container: cannot be created ahead")

// Prewarms: every container function but a GPU one, whose device request
// names the GPUs the allocator assigns only at start.
func (d *Driver) Prewarms(s driver.StartSpec) bool {
	return s.Resources.GPU.Count == 0 && len(s.GPUDevices) == 0
}

// Prewarm creates s's container without starting it, so that Start of
// s.InstanceID skips the engine's create. The container carries Ember's
// labels, so a server killed before it started or discarded it removes
// it at its next start (Cleanup).
func (d *Driver) Prewarm(ctx context.Context, s driver.StartSpec) error {
	if !d.Prewarms(s) {
		return fmt.Errorf("%w: a GPU function's devices are assigned at start", ErrNotPrewarmable)
	}
	if err := d.Validate(s); err != nil {
		return fmt.Errorf("%w: %w", ErrNotPrewarmable, err)
	}
	if !d.imageKnown(s.Image) {
		if _, err := d.cli.ImageInspect(ctx, s.Image); err != nil {
			return fmt.Errorf("%w: image %s: %w", ErrNotPrewarmable, s.Image, err)
		}
		d.setImageKnown(s.Image, true)
	}
	d.mu.Lock()
	_, dup := d.prewarmed[s.InstanceID]
	full := len(d.prewarmed) >= maxPrewarmed
	d.mu.Unlock()
	if dup || full {
		return fmt.Errorf("%w: instance %s already prewarmed, or %d are", ErrNotPrewarmable, s.InstanceID, maxPrewarmed)
	}
	secrets, err := d.resolveSecrets(ctx, s.SecretEnv)
	if err != nil {
		return err
	}
	c, err := d.create(ctx, s, secrets)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.prewarmed[s.InstanceID] = c
	d.mu.Unlock()
	d.logger.Debug("container created ahead", "function", s.Function, "instance", s.InstanceID, "container", shortID(c.id))
	return nil
}

// Discard removes the container Prewarm created for s's instance, unless
// a Start took it over.
func (d *Driver) Discard(ctx context.Context, s driver.StartSpec) {
	d.mu.Lock()
	c := d.prewarmed[s.InstanceID]
	delete(d.prewarmed, s.InstanceID)
	d.mu.Unlock()
	if c == nil {
		return
	}
	if _, err := d.cli.ContainerRemove(ctx, c.id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.logger.Warn("cannot remove a container created ahead; the next server start removes it", "container", shortID(c.id), "err", err)
	}
	d.releasePort(c.hostPort)
}

// takePrewarmed hands Start the container created ahead for s's instance
// when its configuration is the one s would create now; one that differs
// (a secret's value changed since) is removed and Start creates afresh.
func (d *Driver) takePrewarmed(s driver.StartSpec, secrets []string) *created {
	d.mu.Lock()
	c := d.prewarmed[s.InstanceID]
	delete(d.prewarmed, s.InstanceID)
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	cfg, hc, err := d.configs(s, secrets, c.hostPort)
	if err == nil && reflect.DeepEqual(cfg, c.cfg) && reflect.DeepEqual(hc, c.hc) {
		return c
	}
	d.logger.Debug("container created ahead no longer matches its spec; creating afresh", "function", s.Function, "instance", s.InstanceID)
	d.remove(c.id)
	d.releasePort(c.hostPort)
	return nil
}

func missingImage(image string) string {
	return fmt.Sprintf("image %s is not present on the engine (deploy pulls it; redeploy, or build it there)", image)
}

// configs builds the container's configuration: labels, environment,
// ports, limits and the isolation every container gets.
func (d *Driver) configs(s driver.StartSpec, secrets []string, hostPort int) (*container.Config, *container.HostConfig, error) {
	port := hostPort
	if d.opts.Network == NetworkBridge {
		port = cmp.Or(s.Port, DefaultPort)
	}
	portStr := strconv.Itoa(port)
	expand := func(v string) string { return strings.ReplaceAll(v, "${PORT}", portStr) }
	env := make([]string, 0, len(s.Env)+len(secrets)+3)
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+expand(s.Env[k]))
	}
	env = append(env, secrets...)
	env = append(env, "PORT="+portStr, "EMBER_FUNCTION="+s.Function, "EMBER_INSTANCE="+s.InstanceID)
	var cmdArgs []string
	for _, a := range s.Command {
		cmdArgs = append(cmdArgs, expand(a))
	}
	labels := s.Labels.Map()
	labels[LabelOwner] = d.opts.Owner
	stop := int(d.opts.StopTimeout / time.Second)
	cfg := &container.Config{Image: s.Image, Env: env, Cmd: cmdArgs, Labels: labels, StopTimeout: &stop}

	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(d.opts.Network),
		Runtime:     d.opts.OCIRuntime,
		Privileged:  false,
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
	}
	if d.opts.Network == NetworkBridge {
		p, ok := network.PortFrom(uint16(port), network.TCP)
		if !ok {
			return nil, nil, fmt.Errorf("port: %d is not a port", port)
		}
		cfg.ExposedPorts = network.PortSet{p: {}}
		hc.PortBindings = network.PortMap{p: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(hostPort)}}}
	}
	if s.Resources.CPU > 0 {
		hc.NanoCPUs = int64(s.Resources.CPU * 1e9)
	}
	if m := s.Resources.MemoryBytes; m > 0 {
		hc.Memory = m
		hc.MemorySwap = m // no swap: the limit is the limit
	}
	if len(s.GPUDevices) > 0 {
		hc.DeviceRequests = []container.DeviceRequest{d.gpuRequest(s.GPUDevices)}
	}
	for _, u := range d.opts.Ulimits {
		hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	for _, v := range s.Volumes {
		m := mount.Mount{Target: v.MountPath, ReadOnly: v.ReadOnly}
		if v.Name != "" {
			m.Type, m.Source = mount.TypeVolume, volumeName(v.Name)
		} else {
			m.Type, m.Source = mount.TypeBind, v.HostPath
		}
		hc.Mounts = append(hc.Mounts, m)
	}
	return cfg, hc, nil
}

// gpuRequest asks the engine for exactly the GPUs the allocator assigned,
// never "all": two containers must not see each other's GPUs.
func (d *Driver) gpuRequest(ids []string) container.DeviceRequest {
	if d.opts.GPUDriver == GPUCDI {
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = "nvidia.com/gpu=" + id
		}
		return container.DeviceRequest{Driver: "cdi", DeviceIDs: names}
	}
	return container.DeviceRequest{Driver: "nvidia", DeviceIDs: slices.Clone(ids), Capabilities: [][]string{{"gpu"}}}
}

// volumeName is the engine name of a spec's named volume: prefixed, so a
// spec can only reach volumes Ember created.
func volumeName(name string) string { return "ember-" + name }

func (d *Driver) ensureVolume(ctx context.Context, name, fn string) error {
	_, err := d.cli.VolumeInspect(ctx, volumeName(name), client.VolumeInspectOptions{})
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	_, err = d.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: volumeName(name),
		Labels: map[string]string{LabelOwner: d.opts.Owner, driver.LabelFunction: fn}})
	if err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// containerName is readable in `docker ps`: ember-<function>-<instance>.
func containerName(s driver.StartSpec) string {
	fn := strings.NewReplacer("/", "-").Replace(s.Function)
	return "ember-" + fn + "-" + s.InstanceID
}

func shortID(id string) string { return id[:min(12, len(id))] }

// remove force-removes a container on a context of its own: it runs on
// paths where the caller's context may already be over.
func (d *Driver) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.logger.Warn("cannot remove container; the next server start removes it", "container", shortID(id), "err", err)
	}
}

func (d *Driver) resolveSecrets(ctx context.Context, refs map[string]string) ([]string, error) {
	return driver.ResolveSecrets(ctx, d.opts.Secrets, refs)
}

// reservePort picks a free loopback port for the instance (its published
// port in bridge mode, its $PORT in host mode).
func (d *Driver) reservePort() (int, error) {
	port, err := d.ports.Reserve("127.0.0.1")
	if err != nil {
		return 0, fmt.Errorf("container: %w", err)
	}
	return port, nil
}

func (d *Driver) releasePort(port int) { d.ports.Release(port) }

// engineStreamsDelay is how long after ready the engine's streams for a
// container open; see Start.
const engineStreamsDelay = 50 * time.Millisecond

// waitReady probes inst with the shared loop and cadence of every driver
// (driver.AwaitReady): tight at first, then backing off to the spec's
// health interval (2 s by default), each probe bounded by its timeout.
func (d *Driver) waitReady(ctx context.Context, inst *Instance, s driver.StartSpec) (err error) {
	health := func(ctx context.Context, url string) (bool, string) { return d.checkHealth(ctx, url) }
	if s.Protocol == cog.Protocol {
		// Cog's /health-check says READY (or BUSY) in its body, always
		// with 200; a setup that failed ends the wait with Cog's setup
		// logs as the reason rather than waiting for start_timeout.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		s.HealthPath = cog.HealthPath
		health = func(ctx context.Context, url string) (bool, string) {
			ok, seen, err := cog.CheckHealth(ctx, d.probe, url)
			if err != nil {
				cancel(err)
			}
			return ok, seen
		}
		defer func() {
			if se, ok := context.Cause(ctx).(*cog.SetupError); ok && err != nil {
				err = &driver.StartError{Reason: se.Error(), Err: se}
			}
		}()
	}
	cad := driver.Cadence{Initial: d.opts.ProbeInitial, TightMax: d.opts.ProbeMax, TightFor: 20 * time.Millisecond,
		Ceiling: max(cmp.Or(s.HealthInterval, 2*time.Second), d.opts.ProbeMax), Timeout: cmp.Or(s.HealthTimeout, time.Second)}
	dialer := net.Dialer{Timeout: cad.Timeout}
	listening := func(ctx context.Context) (bool, string) { return d.listening(ctx, inst.addr, &dialer) }
	// With a plain health path, one GET of it is both the listening check
	// (any HTTP answer) and the first health check, whose answer is kept
	// for the loop's health probe right after: a connect and then a GET
	// on a second connection cost the just-started container twice.
	var answered *healthAnswer
	if s.Protocol != cog.Protocol && s.HealthPath != "" {
		url := "http://" + inst.addr + "/" + strings.TrimPrefix(s.HealthPath, "/")
		listening = func(ctx context.Context) (bool, string) {
			ctx, cancel := context.WithTimeout(ctx, cad.Timeout)
			defer cancel()
			a, err := d.getHealth(ctx, url)
			if err != nil {
				return false, err.Error()
			}
			answered = &a
			return true, ""
		}
		health = func(ctx context.Context, url string) (bool, string) {
			if a := answered; a != nil {
				answered = nil
				return a.ok, a.status
			}
			return d.checkHealth(ctx, url)
		}
	}
	return driver.AwaitReady(ctx, driver.Readiness{
		Addr: inst.addr, HealthPath: s.HealthPath, Cadence: cad,
		// A published port accepts at the engine's proxy before the
		// container listens; an HTTP answer is the real sign, so in bridge
		// mode "listening" is the first HTTP response.
		Listening: listening,
		Health: func(ctx context.Context, url string) (bool, string) {
			ctx, cancel := context.WithTimeout(ctx, cad.Timeout)
			defer cancel()
			return health(ctx, url)
		},
		Phase:  inst.phase,
		Exited: inst.done,
		Err:    inst.Err,
	})
}

// startCog loads a ready Cog instance's input schema (bounded in size
// and time; without it Cog checks inputs itself) and starts its adapter.
func (d *Driver) startCog(ctx context.Context, inst *Instance, fn string, logger *slog.Logger) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if host, err := d.callbackHost(sctx, inst); err != nil {
		logger.Warn("cog: no webhook address the container reaches; jobs use sync predictions", "err", err)
	} else if err := inst.cog.ListenCallbacks(host); err != nil {
		logger.Warn("cog: jobs use sync predictions", "err", err)
	}
	if err := inst.cog.LoadSchema(sctx); err != nil {
		logger.Warn("cog: no input schema; inputs are passed to the model unchecked", "err", err)
	} else {
		d.mu.Lock()
		d.cogSchemas[fn] = inst.cog.Schema()
		d.mu.Unlock()
	}
	inst.cog.Start()
}

// callbackHost is the host address a container reaches Ember on, for
// Cog's webhooks: loopback with host networking, else its network's
// gateway (the host's side of the bridge).
func (d *Driver) callbackHost(ctx context.Context, inst *Instance) (string, error) {
	if d.opts.Network == NetworkHost {
		return "127.0.0.1", nil
	}
	res, err := d.cli.ContainerInspect(ctx, inst.containerID, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect container: %w", err)
	}
	if ns := res.Container.NetworkSettings; ns != nil {
		for _, name := range slices.Sorted(maps.Keys(ns.Networks)) {
			if ep := ns.Networks[name]; ep != nil && ep.Gateway.IsValid() {
				return ep.Gateway.String(), nil
			}
		}
	}
	return "", errors.New("the container's network has no gateway address")
}

// listening reports whether addr serves: in host mode a TCP connect; in
// bridge mode an HTTP exchange, since the engine's port forwarder accepts
// connections before anything listens behind it.
func (d *Driver) listening(ctx context.Context, addr string, dialer *net.Dialer) (bool, string) {
	if d.opts.Network == NetworkHost {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := d.probe.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	return true, ""
}

// healthAnswer is an HTTP answer of a health path: 2xx or not, and its status.
type healthAnswer struct {
	ok     bool
	status string
}

func (d *Driver) checkHealth(ctx context.Context, url string) (bool, string) {
	a, err := d.getHealth(ctx, url)
	if err != nil {
		return false, err.Error()
	}
	return a.ok, a.status
}

// getHealth GETs url; an error means no HTTP answer.
func (d *Driver) getHealth(ctx context.Context, url string) (healthAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return healthAnswer{}, err
	}
	resp, err := d.probe.Do(req)
	if err != nil {
		return healthAnswer{}, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return healthAnswer{ok: resp.StatusCode >= 200 && resp.StatusCode < 300, status: resp.Status}, nil
}

// Capabilities: Start returns only once the health check passed.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{OwnsReadiness: true}
}

var (
	_ driver.Driver             = (*Driver)(nil)
	_ driver.Validator          = (*Driver)(nil)
	_ driver.CapabilityReporter = (*Driver)(nil)
	_ driver.Prewarmer          = (*Driver)(nil)
)
