package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/ember-run/ember/internal/driver"
)

// Network modes.
const (
	// NetworkPod: each Pod has its own IP; the instance listens on the
	// function's fixed port (spec port, default 8080), reached at
	// podIP:port.
	NetworkPod = "pod"
	// NetworkHost: hostNetwork Pods; the instance listens on $PORT, a port
	// Ember picks and declares as the Pod's hostPort, so the scheduler
	// never puts two Pods with one port on a node.
	NetworkHost = "host"
)

// Phases a Pod start reports besides driver.PhaseSpawned (the Pod was
// created), driver.PhaseListening and driver.PhaseReady, in order.
const (
	PhaseScheduled = "scheduled" // the scheduler bound the Pod to a node
	PhaseRunning   = "running"   // its container runs and the Pod has an IP
)

// DefaultPort is the port an instance listens on in pod network mode when
// its spec names none.
const DefaultPort = 8080

// createTimeout bounds the API server's create of an instance's Secret and
// Pod, which go on when the caller's context ends (see Start).
const createTimeout = 30 * time.Second

// ContainerName is the name of the one container in an instance's Pod.
const ContainerName = "function"

// Runtimes this driver runs (spec.Runtime* values; driver/kube does not
// import spec's neighbours).
const (
	runtimeProcess   = "process"
	runtimeContainer = "container"
	runtimeONNX      = "onnx"
)

// What an onnx worker Pod needs of Ember's worker image
// (deploy/image/build.sh worker): the ember binary as its entrypoint, and
// a cache for the models the worker pulls itself (an emptyDir).
const (
	WorkerExecutable = "/ember"
	WorkerCacheDir   = "/var/cache/ember"
)

// ModelsMountPath is where a models claim (Options.Models "pvc:NAME") is
// mounted in worker Pods; a host path is mounted at its own path.
const ModelsMountPath = "/models"

// Errors a failed start wraps, for errors.Is.
var (
	// ErrImage: the kubelet cannot pull or find the Pod's image.
	ErrImage = errors.New("image unavailable")
	// ErrUnschedulable: the scheduler found no node for the Pod.
	ErrUnschedulable = errors.New("pod unschedulable")
	// ErrDeleted: the Pod was deleted by someone other than Ember.
	ErrDeleted = errors.New("pod deleted")
)

// Options configures a Driver.
type Options struct {
	// Client talks to the cluster (Connect).
	Client kubernetes.Interface
	// Namespace holds the Pods and Secrets.
	Namespace string
	// Network is NetworkPod (default) or NetworkHost.
	Network string
	// WorkerImage is Ember's own image, run in worker mode (`worker onnx`)
	// by onnx functions; its entrypoint is the ember binary. "" refuses
	// onnx functions.
	WorkerImage string
	// Models is the volume every onnx worker Pod mounts read-only, so
	// that a pooled worker can load any function's model: "pvc:NAME" (a
	// PersistentVolumeClaim, at ModelsMountPath) or an absolute host path
	// (at the same path: single-node and test clusters). "" mounts none:
	// onnx functions then need npm: models, which the worker pulls.
	Models string
	// AllowHostPaths lists host directories specs may mount (prefixes);
	// empty refuses every host_path.
	AllowHostPaths []string
	// Secrets resolves StartSpec.SecretEnv at each start.
	Secrets driver.SecretSource
	// StopGrace is a Pod's termination grace period (SIGTERM to SIGKILL)
	// when the stop's ctx has no deadline. Default 10s.
	StopGrace time.Duration
	// HostAddr is the address host-mode ports are picked on (driver.Ports):
	// "127.0.0.1" by default, right when the node is this machine.
	HostAddr string
	// ProbeInitial and ProbeMax bound the readiness probe's first pauses
	// (defaults 1ms and 10ms: a Pod IP is a network hop away).
	ProbeInitial, ProbeMax time.Duration
	// RewatchDelay is the pause before a failed watch is opened again
	// (default 1s).
	RewatchDelay time.Duration
}

// Driver runs instances as Pods. It is safe for concurrent use.
type Driver struct {
	logger *slog.Logger
	opts   Options
	cs     kubernetes.Interface
	probe  *http.Client
	ports  driver.Ports

	// ctx ends with Close: every instance's watch and log stream stop,
	// and their Pods are left running for a next leader to adopt.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a Driver; it does not contact the cluster.
func New(logger *slog.Logger, opts Options) (*Driver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		return nil, errors.New("kube: no client")
	}
	opts.Namespace = cmp.Or(opts.Namespace, "default")
	opts.Network = cmp.Or(opts.Network, NetworkPod)
	if opts.Network != NetworkPod && opts.Network != NetworkHost {
		return nil, fmt.Errorf("kube-network: want %s or %s (got %q)", NetworkPod, NetworkHost, opts.Network)
	}
	if _, _, err := parseModels(opts.Models); err != nil {
		return nil, err
	}
	opts.StopGrace = cmp.Or(opts.StopGrace, 10*time.Second)
	opts.HostAddr = cmp.Or(opts.HostAddr, "127.0.0.1")
	opts.ProbeInitial = cmp.Or(opts.ProbeInitial, time.Millisecond)
	opts.ProbeMax = max(cmp.Or(opts.ProbeMax, 10*time.Millisecond), opts.ProbeInitial)
	opts.RewatchDelay = cmp.Or(opts.RewatchDelay, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{logger: logger, opts: opts, cs: opts.Client, ctx: ctx, cancel: cancel,
		probe: &http.Client{
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}, nil
}

// Close stops watching every instance without deleting its Pod: a
// server that is shutting down or lost its leadership leaves the Pods to
// the next leader (Adopt). Their instances end (Done) with that reason.
func (d *Driver) Close() error {
	d.cancel()
	return nil
}

// Namespace is where the driver's Pods live.
func (d *Driver) Namespace() string { return d.opts.Namespace }

// Validate refuses what this driver will not run: a process or container
// function without an image, an onnx function without a worker image,
// protocol cog, shared GPUs, and host paths outside the allow-list.
func (d *Driver) Validate(s driver.StartSpec) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &driver.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch rt := cmp.Or(s.Runtime, runtimeProcess); rt {
	case runtimeProcess:
		if s.Image == "" {
			add("image", "runtime process needs image: on --backend kubernetes (an image holding the command, e.g. ghcr.io/acme/server:1.0); a Pod cannot run a host command")
		}
	case runtimeContainer:
		if s.Image == "" {
			add("image", `required for runtime "container" (an image the cluster's nodes can pull, e.g. ghcr.io/acme/model:1.2)`)
		}
	case runtimeONNX:
		if d.opts.WorkerImage == "" {
			add("runtime", "onnx functions on --backend kubernetes run Ember's own image in worker mode: start the server with --kube-worker-image (e.g. ghcr.io/ember-run/ember-onnx:<version>)")
		}
		if _, mount, _ := parseModels(d.opts.Models); s.Model != "" && !modelVisible(s.Model, mount) {
			where := "no models volume is mounted (start the server with --kube-models pvc:<claim> or a host path)"
			if mount != "" {
				where = "the models volume is mounted at " + mount + " (--kube-models)"
			}
			add("model", "%q is not visible to a worker Pod: on --backend kubernetes a model is an npm:<package>@<version> reference or a path under the models volume; %s", s.Model, where)
		}
	default:
		add("runtime", "runtime %q cannot run on --backend kubernetes (process, container, onnx)", rt)
	}
	if s.Protocol != "" && s.Protocol != "http" {
		add("protocol", "%s is not supported on --backend kubernetes (use protocol http)", s.Protocol)
	}
	if s.Resources.GPU.Shared {
		add("resources.gpu.shared", "Kubernetes hands out whole GPUs (nvidia.com/gpu); shared GPUs are not supported on --backend kubernetes")
	}
	for i, v := range s.Volumes {
		if v.HostPath != "" && !d.hostPathAllowed(v.HostPath) {
			reason := "host paths are refused unless the operator allows them (ember serve --container-allow-host-path DIR)"
			if len(d.opts.AllowHostPaths) > 0 {
				reason = fmt.Sprintf("%q is not under an allowed host path (%s)", v.HostPath, strings.Join(d.opts.AllowHostPaths, ", "))
			}
			add(fmt.Sprintf("volumes[%d].host_path", i), "%s", reason)
		}
	}
	return errors.Join(errs...)
}

// parseModels reads Options.Models: the volume source and where worker
// Pods mount it ("" for none).
func parseModels(v string) (corev1.VolumeSource, string, error) {
	switch {
	case v == "":
		return corev1.VolumeSource{}, "", nil
	case strings.HasPrefix(v, "pvc:"):
		claim := strings.TrimPrefix(v, "pvc:")
		if errs := validation.IsDNS1123Subdomain(claim); len(errs) > 0 {
			return corev1.VolumeSource{}, "", fmt.Errorf("kube-models: claim %q: %s", claim, strings.Join(errs, "; "))
		}
		return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: true}}, ModelsMountPath, nil
	case path.IsAbs(v) && path.Clean(v) == v && v != "/":
		return corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: v}}, v, nil
	default:
		return corev1.VolumeSource{}, "", fmt.Errorf("kube-models: want pvc:<claim> or an absolute host path (got %q)", v)
	}
}

// modelVisible: a worker Pod can load model m, an npm: reference it pulls
// or a path that, cleaned, is under the models volume ("/models/../x"
// names no model on it).
func modelVisible(m, mount string) bool {
	if strings.HasPrefix(m, "npm:") {
		return true
	}
	c := path.Clean(m)
	return mount != "" && path.IsAbs(c) && (c == mount || strings.HasPrefix(c, strings.TrimSuffix(mount, "/")+"/"))
}

func (d *Driver) hostPathAllowed(p string) bool {
	for _, dir := range d.opts.AllowHostPaths {
		dir = filepath.Clean(dir)
		if p == dir || strings.HasPrefix(p, dir+"/") || dir == "/" {
			return true
		}
	}
	return false
}

// Capabilities: Start returns only once Ember's own probe of the Pod's
// address passed.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{OwnsReadiness: true}
}

// rendered is what Start creates for an instance.
type rendered struct {
	pod    *corev1.Pod
	secret *corev1.Secret // nil when the instance has no environment of its own
	port   int
	health string // the health path probed (onnx: the worker's)
}

// render builds s's Pod and Secret. secrets are resolved NAME=value
// entries; they and the spec's env go into the Secret only, and the Pod
// refers to them by key, so no value is in the Pod spec.
func (d *Driver) render(s driver.StartSpec, secrets []string, port int) (*rendered, error) {
	name := podName(s)
	portStr := strconv.Itoa(port)
	expand := func(v string) string { return strings.ReplaceAll(v, "${PORT}", portStr) }
	// The kubelet expands $(VAR) in command and args; Ember's ${PORT} is
	// expanded here, and "$(" is escaped so the rest reaches the process
	// as written.
	literal := func(v string) string { return strings.ReplaceAll(expand(v), "$(", "$$(") }

	r := &rendered{port: port, health: s.HealthPath}
	data := map[string][]byte{}
	for k, v := range s.Env {
		data[k] = []byte(expand(v))
	}
	for _, kv := range secrets {
		k, v, _ := strings.Cut(kv, "=")
		data[k] = []byte(v)
	}
	env := []corev1.EnvVar{
		{Name: "PORT", Value: portStr},
		{Name: "EMBER_FUNCTION", Value: s.Function},
		{Name: "EMBER_INSTANCE", Value: s.InstanceID},
	}
	if len(data) > 0 {
		r.secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName(name), Namespace: d.opts.Namespace,
				Labels: podLabels(s.Labels), Annotations: podAnnotations(s.Labels)},
			Type: corev1.SecretTypeOpaque, Data: data,
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: r.secret.Name}, Key: k}}})
		}
	}
	no, yes := false, true
	c := corev1.Container{
		Name: ContainerName, Image: s.Image, Env: env, WorkingDir: s.Workdir,
		ImagePullPolicy: corev1.PullIfNotPresent,
		SecurityContext: &corev1.SecurityContext{
			Privileged: &no, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	var args []string
	for _, a := range s.Command {
		args = append(args, literal(a))
	}
	var volumes []corev1.Volume
	switch cmp.Or(s.Runtime, runtimeProcess) {
	case runtimeProcess:
		c.Command = args // the spec's argv is the whole command line
	case runtimeContainer:
		c.Args = args // like docker run IMAGE ARGS: the image's entrypoint stays
	case runtimeONNX:
		// The onnx driver (driver/onnx) writes the worker's argv, for its
		// pool's generic workers and its functions' alike, with
		// WorkerExecutable first; the Pod gives it the worker image, a
		// cache and the models volume.
		if len(args) == 0 {
			return nil, errors.New("an onnx worker Pod needs its command line from the onnx driver")
		}
		c.Image = d.opts.WorkerImage
		c.Command = args
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "ember-cache", MountPath: WorkerCacheDir})
		volumes = append(volumes, corev1.Volume{Name: "ember-cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		if src, mount, _ := parseModels(d.opts.Models); mount != "" {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "ember-models", MountPath: mount, ReadOnly: true})
			volumes = append(volumes, corev1.Volume{Name: "ember-models", VolumeSource: src})
		}
		r.health = cmp.Or(s.HealthPath, "/health")
	}
	cp := corev1.ContainerPort{Name: "http", ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}
	if d.opts.Network == NetworkHost {
		cp.HostPort = int32(port)
	}
	c.Ports = []corev1.ContainerPort{cp}
	res := corev1.ResourceList{}
	if s.Resources.CPU > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(s.Resources.CPU*1000+0.5), resource.DecimalSI)
	}
	if m := s.Resources.MemoryBytes; m > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(m, resource.BinarySI)
	}
	if n := s.Resources.GPU.Count; n > 0 {
		res["nvidia.com/gpu"] = *resource.NewQuantity(int64(n), resource.DecimalSI)
	}
	if len(res) > 0 {
		// Requests equal to limits: the Pod gets what it is metered for
		// (Guaranteed QoS when both cpu and memory are set).
		c.Resources = corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()}
	}
	for i, v := range s.Volumes {
		vname := "vol-" + strconv.Itoa(i)
		var src corev1.VolumeSource
		if v.Name != "" {
			src.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.Name, ReadOnly: v.ReadOnly}
		} else {
			src.HostPath = &corev1.HostPathVolumeSource{Path: v.HostPath}
		}
		volumes = append(volumes, corev1.Volume{Name: vname, VolumeSource: src})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vname, MountPath: v.MountPath, ReadOnly: v.ReadOnly})
	}
	grace := int64(d.opts.StopGrace / time.Second)
	r.pod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.opts.Namespace,
			Labels: podLabels(s.Labels), Annotations: podAnnotations(s.Labels)},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{c},
			Volumes:    volumes,
			// Ember restarts instances itself; a crashed Pod ends its
			// instance.
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			// A function gets no cluster credentials and no Service
			// variables.
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
		},
	}
	if d.opts.Network == NetworkHost {
		r.pod.Spec.HostNetwork = yes
		r.pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	return r, nil
}

// Start creates s's Secret and Pod, watches the Pod until its container
// runs and it has an IP, then probes its address itself (Knative's
// revision backends: no waiting for the kubelet's readiness period). On
// failure the Pod and Secret are deleted and a *driver.StartError says why:
// an image the node cannot pull, the scheduler's message, or the exit
// status and last log lines of a crash.
func (d *Driver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	if err := d.Validate(s); err != nil {
		return nil, &driver.StartError{Reason: strings.ReplaceAll(err.Error(), "\n", "; "), Err: err}
	}
	secrets, err := driver.ResolveSecrets(ctx, d.opts.Secrets, s.SecretEnv)
	if err != nil {
		return nil, err
	}
	port, hostPort := cmp.Or(s.Port, DefaultPort), 0
	if d.opts.Network == NetworkHost {
		if hostPort, err = d.ports.Reserve(d.opts.HostAddr); err != nil {
			return nil, &driver.StartError{Reason: "no free port", Err: err}
		}
		port = hostPort
	}
	r, err := d.render(s, secrets, port)
	if err != nil {
		d.ports.Release(hostPort)
		return nil, &driver.StartError{Reason: err.Error(), Err: err}
	}
	inst := d.newInstance(s.Function, s.InstanceID, r.pod.Name, port, hostPort, s.Output, s.OnPhase)
	// The creates run to their end even when ctx ends first: the API
	// server may commit an object after the caller gave up, and a Secret
	// or Pod nothing knows of would outlive the start. A cancelled start
	// deletes what it made once the answers are in; an object whose
	// create went unanswered is deleted by name, unless the answer was
	// that the name was taken (then it is someone else's).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	unknown := func(err error) bool { return cctx.Err() != nil && !apierrors.IsAlreadyExists(err) }
	if r.secret != nil {
		// The Secret goes first: a Pod created before it would wait in
		// the kubelet's retry backoff (CreateContainerConfigError).
		_, err := d.cs.CoreV1().Secrets(d.opts.Namespace).Create(cctx, r.secret, metav1.CreateOptions{})
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
			d.deleteSecret(r.secret.Name)
		} else if err != nil && unknown(err) {
			d.deleteSecret(r.secret.Name)
		}
		if err != nil {
			d.ports.Release(hostPort)
			return nil, &driver.StartError{Reason: "create secret " + r.secret.Name + ": " + err.Error(), Err: err}
		}
		inst.secret = r.secret.Name
	}
	created, err := d.cs.CoreV1().Pods(d.opts.Namespace).Create(cctx, r.pod, metav1.CreateOptions{})
	switch {
	case err == nil && ctx.Err() != nil:
		if derr := d.deletePodUID(created.Name, created.UID); derr != nil {
			d.logger.Warn("cannot delete the pod of a cancelled start; the leader's next reclaim deletes it", "pod", created.Name, "err", derr)
		}
		err = ctx.Err()
	case err != nil && unknown(err):
		if derr := d.deletePod(r.pod.Name, 0); derr != nil {
			d.logger.Warn("cannot delete the pod of an unanswered create; the leader's next reclaim deletes it", "pod", r.pod.Name, "err", derr)
		}
	}
	if err != nil {
		d.deleteSecret(inst.secret)
		d.ports.Release(hostPort)
		return nil, &driver.StartError{Reason: "create pod " + r.pod.Name + ": " + err.Error(), Err: err}
	}
	inst.phase(driver.PhaseSpawned)
	if r.secret != nil {
		d.ownSecret(ctx, r.secret.Name, created)
	}
	logger := d.logger.With("function", s.Function, "instance", s.InstanceID, "pod", created.Name)
	go inst.run(created)

	if err := d.awaitRunning(ctx, inst); err != nil {
		return nil, d.failStart(inst, err, logger)
	}
	if err := d.waitReady(ctx, inst, r.health, s); err != nil {
		return nil, d.failStart(inst, err, logger)
	}
	logger.Debug("pod ready", "addr", inst.Addr(), "phases", inst.Phases())
	return inst, nil
}

// failStart ends a start that did not reach ready: the Pod is deleted at
// once and the error carries the Pod's last lines.
func (d *Driver) failStart(inst *Instance, err error, logger *slog.Logger) error {
	inst.kill()
	select {
	case <-inst.done:
	case <-time.After(30 * time.Second):
	}
	var se *driver.StartError
	if errors.As(err, &se) && len(se.Tail) == 0 {
		se.Tail = inst.Tail(20)
	}
	logger.Debug("pod failed to start", "err", err)
	return err
}

// awaitRunning waits until the Pod's container runs and it has an IP, the
// Pod fails, or ctx ends; the error then names what it was waiting for
// (the scheduler's message for an unschedulable Pod).
func (d *Driver) awaitRunning(ctx context.Context, inst *Instance) error {
	start := time.Now()
	select {
	case <-inst.up:
		return nil
	case <-inst.done:
		err := inst.Err()
		return &driver.StartError{Reason: err.Error() + " before becoming ready", Err: err}
	case <-ctx.Done():
		waiting := inst.waitingFor()
		return &driver.StartError{
			Reason: fmt.Sprintf("pod %s not running after %s (%s)", inst.pod, time.Since(start).Round(time.Millisecond), waiting.reason),
			Err:    errors.Join(ctx.Err(), waiting.err),
		}
	}
}

// waitReady probes the Pod's address with the shared loop: a TCP connect,
// then GET of the health path until 2xx.
func (d *Driver) waitReady(ctx context.Context, inst *Instance, health string, s driver.StartSpec) error {
	cad := driver.Cadence{Initial: d.opts.ProbeInitial, TightMax: d.opts.ProbeMax, TightFor: 50 * time.Millisecond,
		Ceiling: max(cmp.Or(s.HealthInterval, 2*time.Second), d.opts.ProbeMax), Timeout: cmp.Or(s.HealthTimeout, time.Second)}
	dialer := net.Dialer{Timeout: cad.Timeout}
	return driver.AwaitReady(ctx, driver.Readiness{
		Addr: inst.Addr(), HealthPath: health, Cadence: cad,
		Listening: func(ctx context.Context) (bool, string) {
			conn, err := dialer.DialContext(ctx, "tcp", inst.Addr())
			if err != nil {
				return false, err.Error()
			}
			conn.Close()
			return true, ""
		},
		Health: func(ctx context.Context, url string) (bool, string) {
			ctx, cancel := context.WithTimeout(ctx, cad.Timeout)
			defer cancel()
			return d.checkHealth(ctx, url)
		},
		Phase:  inst.phase,
		Exited: inst.done,
		Err:    inst.Err,
	})
}

func (d *Driver) checkHealth(ctx context.Context, url string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := d.probe.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode >= 200 && resp.StatusCode < 300, resp.Status
}

// ownSecret makes the Pod the Secret's owner, so the cluster's garbage
// collector deletes the Secret with the Pod even when Ember does not (a
// server killed mid-stop). A failure is logged: Stop deletes it anyway.
func (d *Driver) ownSecret(ctx context.Context, name string, pod *corev1.Pod) {
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	secrets := d.cs.CoreV1().Secrets(d.opts.Namespace)
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		sec.OwnerReferences = []metav1.OwnerReference{ref}
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		d.logger.Warn("cannot make the pod own its secret; stopping the instance still deletes it", "secret", name, "err", err)
	}
}

// deleteSecret deletes a Pod's Secret on a context of its own: it runs
// where the caller's context may be over.
func (d *Driver) deleteSecret(name string) {
	if name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cs.CoreV1().Secrets(d.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		d.logger.Warn("cannot delete an instance's secret; the pod owns it, so the cluster deletes it with the pod", "secret", name, "err", err)
	}
}

// deletePod deletes a Pod with grace seconds (0: at once) on a context of
// its own.
func (d *Driver) deletePod(name string, grace int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.cs.CoreV1().Pods(d.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return nil
}

// deletePodUID deletes the Pod name at once, only if it is still the one
// with uid (a Pod of that name made since is left alone).
func (d *Driver) deletePodUID(name string, uid types.UID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zero := int64(0)
	err := d.cs.CoreV1().Pods(d.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return nil
}

// List returns the Pods carrying Ember's labels in the namespace.
func (d *Driver) List(ctx context.Context) ([]driver.Listed, error) {
	pods, err := d.cs.CoreV1().Pods(d.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", d.opts.Namespace, err)
	}
	var out []driver.Listed
	for i := range pods.Items {
		p := &pods.Items[i]
		l, ok := parsePodLabels(p.Labels, p.Annotations)
		if !ok {
			continue
		}
		ls := driver.Listed{Labels: l, Handle: p.Name}
		if port := podPort(p); port > 0 && p.Status.PodIP != "" {
			ls.Addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))
		}
		out = append(out, ls)
	}
	return out, nil
}

// Cleanup deletes, at once, every Pod and Secret of Ember's in the
// namespace: what a server killed before it could stop its instances
// left. For a single server (ember serve) that owns the namespace; a
// leader that takes over running Pods adopts them instead
// (driver.Reclaim). It returns how many Pods it deleted.
func (d *Driver) Cleanup(ctx context.Context) (int, error) {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy}
	pods, err := d.cs.CoreV1().Pods(d.opts.Namespace).List(ctx, sel)
	if err != nil {
		return 0, fmt.Errorf("list pods in %s: %w", d.opts.Namespace, err)
	}
	var errs []error
	n := 0
	zero := int64(0)
	for _, p := range pods.Items {
		if _, ok := parsePodLabels(p.Labels, p.Annotations); !ok {
			continue
		}
		err := d.cs.CoreV1().Pods(d.opts.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", p.Name, err))
			continue
		}
		n++
	}
	if err := d.cs.CoreV1().Secrets(d.opts.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		errs = append(errs, fmt.Errorf("delete secrets: %w", err))
	}
	return n, errors.Join(errs...)
}

// podPort is the port the Pod's container declared.
func podPort(p *corev1.Pod) int {
	for _, c := range p.Spec.Containers {
		if c.Name == ContainerName && len(c.Ports) > 0 {
			return int(c.Ports[0].ContainerPort)
		}
	}
	return 0
}

// Adopt takes over a listed Pod: the instance watches it, streams its new
// log lines and stops it like one it started. A Pod that has already
// ended is deleted and its instance is over at once.
func (d *Driver) Adopt(ctx context.Context, l driver.Listed) (driver.Instance, error) {
	p, err := d.cs.CoreV1().Pods(d.opts.Namespace).Get(ctx, l.Handle, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s: %w", l.Handle, err)
	}
	if _, ok := parsePodLabels(p.Labels, p.Annotations); !ok {
		return nil, fmt.Errorf("pod %s is not one of Ember's instances", l.Handle)
	}
	port, hostPort := podPort(p), 0
	if p.Spec.HostNetwork && port > 0 {
		// The Pod listens on a host port this driver handed out in an
		// earlier life: hold it, so no new instance is given it.
		hostPort = port
		d.ports.Hold(hostPort)
	}
	inst := d.newInstance(l.Labels.Function, l.Labels.Instance, p.Name, port, hostPort, nil, nil)
	inst.adopted = true
	if p.Status.PodIP != "" {
		inst.addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(inst.port)) // run confirms it is running
	}
	if len(p.Spec.Containers) > 0 {
		for _, e := range p.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				inst.secret = e.ValueFrom.SecretKeyRef.Name
				break
			}
		}
	}
	go inst.run(p)
	return inst, nil
}

// AwaitAdopted probes an adopted instance as Start probes a new one:
// until its Pod runs with an IP, then a TCP connect and s's health path
// (an onnx worker's /health) until 2xx, or ctx ends. An adopted Pod is
// served only after this passes: it may have crashed, hung or been
// replaced while no leader watched it. An error is a *driver.StartError
// saying which phase it was stuck in; the caller stops the instance.
func (d *Driver) AwaitAdopted(ctx context.Context, di driver.Instance, s driver.StartSpec) error {
	inst, ok := di.(*Instance)
	if !ok || inst.d != d {
		return fmt.Errorf("%v is not an instance of this driver", di)
	}
	if err := d.awaitRunning(ctx, inst); err != nil {
		return err
	}
	health := s.HealthPath
	if s.Runtime == runtimeONNX {
		health = "/health" // the worker's, as render probes it
	}
	return d.waitReady(ctx, inst, health, s)
}

var (
	_ driver.Driver             = (*Driver)(nil)
	_ driver.Validator          = (*Driver)(nil)
	_ driver.CapabilityReporter = (*Driver)(nil)
	_ driver.Lister             = (*Driver)(nil)
	_ driver.Adopter            = (*Driver)(nil)
)
