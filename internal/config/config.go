// Package config is the server's configuration: one struct, its defaults,
// the environment variables that override them, and validation that names
// the field at fault.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Config is everything `ember serve` can be told.
type Config struct {
	// Addr is the listen address of the API.
	Addr string
	// DataDir holds the database, instance logs and the model cache.
	DataDir string
	// Grace bounds the drain on SIGTERM: in-flight requests get this long.
	Grace time.Duration
	// DrainDelay is how long readiness fails before the listener closes,
	// so load balancers stop sending first.
	DrainDelay time.Duration
	// Tick is the controller's decision interval.
	Tick time.Duration
	// Store is where state lives: "" or sqlite://PATH (the embedded SQLite
	// database, by default <data-dir>/ember.db) or a postgres:// DSN (a
	// PostgreSQL database several servers share). It may hold a password:
	// logs and errors name only user@host:port/database.
	Store string
	// StorePoll is how often the server reads the store's change log, so
	// functions, routes and key revocations written by another handle on
	// the same store apply here.
	StorePoll time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// ReadHeaderTimeout cuts off clients that send headers too slowly.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration
	// DefaultIdleTimeout is scaling.idle_timeout for functions deployed
	// without one: "auto" (learned keep-warm) or a duration ("" = 120s, the
	// spec's own default).
	DefaultIdleTimeout string
	// DefaultColdStartWorth is scaling.cold_start_worth of functions that
	// set none: what a cold start's wait is worth, as hardware time.
	DefaultColdStartWorth time.Duration
	// Auth requires an API key on every request. Off only for local
	// experiments: anyone who reaches the port can then run anything.
	Auth bool
	// OpenMetrics serves /metrics without a key (/healthz and /readyz never
	// need one).
	OpenMetrics bool
	// WebhookAllowPrivate lets webhooks reach loopback and private
	// addresses, which are refused by default: a caller chooses the URL,
	// and loopback reaches other functions' instance ports and the API.
	// Link-local addresses (cloud metadata) stay refused.
	WebhookAllowPrivate bool
	// WebhookAllow lists CIDRs (or single addresses) of loopback or
	// private networks that webhooks may reach, e.g. 127.0.0.1/32 for a
	// receiver on this machine. Link-local, multicast and unspecified
	// addresses stay refused even when listed.
	WebhookAllow []string
	// CacheDir holds pulled models and runtimes ("" = <user cache dir>/ember,
	// shared by every data dir: pulls are locked and land by rename).
	CacheDir string
	// ONNXPool pre-started ONNX workers (runtime loaded, no model) are kept
	// once an onnx function is deployed; 0 turns the pool off.
	ONNXPool int
	// ONNXLoaded workers with a model loaded are kept after their function
	// scales to zero, for its next start within its keep-warm window.
	ONNXLoaded int
	// ONNXThreads is ONNX Runtime's intra-op threads per session in each
	// onnx instance (0 = one per core). Lower it when several instances
	// share a machine.
	ONNXThreads int
	// ORTLib is the ONNX Runtime shared library; "" fetches it.
	ORTLib string
	// TLSCert and TLSKey, when both set, serve HTTPS.
	TLSCert, TLSKey string
	// InheritEnv names server environment variables every instance
	// inherits besides PATH, HOME, LANG and TZ (e.g. LD_LIBRARY_PATH,
	// HF_HOME). EMBER_* names are refused: the server's own never pass.
	InheritEnv []string
	// MaxInstancesPerFunction caps one function's instances; a spec whose
	// scaling.min or scaling.max exceeds it is refused at deploy.
	MaxInstancesPerFunction int
	// MaxInstances caps live instances across all functions.
	MaxInstances int
	// MaxConcurrentStarts bounds instance starts in progress at once.
	MaxConcurrentStarts int
	// RequestRecords bounds the per-request usage records the store keeps
	// (the newest; each is also dropped after 7 days); 0 keeps none. The
	// hourly and daily rollups count every request either way.
	RequestRecords int
	// BodyPreReadBytes: request bodies up to this size are read whole
	// before an instance slot is taken; larger ones stream (0 = never).
	BodyPreReadBytes int64
	// BodyBufferBudget bounds the bytes of pre-read bodies held at once
	// across the server; beyond it callers get 503 with Retry-After.
	BodyBufferBudget int64
	// MinBodyRate (bytes/s) is the slowest a request body may arrive once
	// its first 10 s have passed; a slower sender gets 408 (0 = off).
	MinBodyRate int64
	// ContainerHost is the container engine's Docker Engine API endpoint
	// ("" = $DOCKER_HOST, /var/run/docker.sock, then Podman's socket).
	ContainerHost string
	// ContainerNetwork is bridge (each container its own network, its
	// port published on 127.0.0.1) or host (the host's network; the image
	// listens on $PORT).
	ContainerNetwork string
	// ContainerUlimits are set on every container ("nofile=1024:1024");
	// an engine without CAP_SYS_RESOURCE cannot raise limits past its own.
	ContainerUlimits []string
	// ContainerOCIRuntime is the engine's OCI runtime ("runc"); "" = the
	// engine's default.
	ContainerOCIRuntime string
	// ContainerAllowHostPaths lists host directories container specs may
	// mount (host_path); empty refuses every host path.
	ContainerAllowHostPaths []string
	// ContainerPrewarm bounds the container functions at zero whose next
	// container is created ahead (not started), so their cold start skips
	// the engine's create; 0 = off. GPU functions are never prewarmed.
	ContainerPrewarm int
	// GPUs is where the GPU inventory comes from: "auto" (nvidia-smi;
	// none when it is absent), "off" (no allocation: resources.gpu is a
	// metering and pricing hint, the GPUs are not checked or assigned), or
	// "file:PATH" (nvidia-smi's CSV in a file).
	GPUs string
	// ContainerGPUDriver is how containers get their GPUs: nvidia (an
	// NVIDIA device request, the Container Toolkit) or cdi (CDI names).
	ContainerGPUDriver string
	// Backend is where instances run: "local" (processes, the built-in
	// ONNX runtime and containers on this machine) or "kubernetes" (each
	// instance a Pod, driver/kube).
	Backend string
	// Kubeconfig is the kubeconfig file of the cluster ("" = in-cluster
	// config, then $KUBECONFIG, then ~/.kube/config).
	Kubeconfig string
	// KubeNamespace is where Pods, Secrets and Leases live ("" = the
	// namespace Ember's own Pod runs in, else "default").
	KubeNamespace string
	// KubeNetwork is pod (a Pod's own IP, the function's fixed port) or
	// host (hostNetwork Pods on Ember-assigned ports).
	KubeNetwork string
	// KubeWorkerImage is Ember's own image, run by onnx and process
	// functions' Pods in worker mode.
	KubeWorkerImage string
	// KubeModels is the volume every onnx worker Pod mounts read-only, so
	// that pooled workers can load any function's model: pvc:<claim>
	// (mounted at /models) or an absolute host path (at its own path).
	// "" = none: onnx functions then need npm: models.
	KubeModels string
	// AdminKeyFile holds an admin key (a mounted Kubernetes Secret): at
	// start it is made an admin key of the store if it is not one yet, and
	// no <data-dir>/admin.key is written. "" = the data-dir file.
	AdminKeyFile string
	// ClusterTokenFile holds the token Ember's nodes present to each
	// other on /internal/v1/ routes (≥ 32 bytes). ClusterToken is the
	// same from EMBER_CLUSTER_TOKEN (no flag: a command line is visible
	// to every user). At most one of the two.
	ClusterTokenFile string
	ClusterToken     string
	// The roles (`ember controller`, `ember gateway`): the controllers
	// elect a leader with the coordination.k8s.io Lease LeaseName in
	// KubeNamespace; the holder identity is NodeName_AdvertiseAddr, which
	// is how gateways find the leader's internal API.
	LeaseName          string
	LeaseDuration      time.Duration
	LeaseRenewDeadline time.Duration
	LeaseRetryPeriod   time.Duration
	// JobLease is how long a job a worker claimed stays leased without a
	// heartbeat (renewed every third of it): a gateway that dies holds
	// its jobs this long before another runs them again. 1s–10m.
	JobLease time.Duration
	// AdvertiseAddr is the host:port other nodes reach this controller on
	// ("" = $POD_IP with --addr's port, else --addr).
	AdvertiseAddr string
	// NodeName names this node in the Lease and in reports ("" = $POD_NAME,
	// else the host name).
	NodeName string
	// GuardCommand is the argv of the helper that kills instances' whole
	// process groups if the server dies (process.Guard). The CLI sets it
	// to `ember worker guard`; empty (in-process embedders, benchmarks)
	// runs without one. Not a flag.
	GuardCommand []string
}

// Default returns the documented defaults.
func Default() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		DataDir:           "./.ember",
		Grace:             30 * time.Second,
		DrainDelay:        0,
		Tick:              500 * time.Millisecond,
		StorePoll:         250 * time.Millisecond,
		LogLevel:          "info",
		LogFormat:         "text",
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// keepalive.DefaultColdStartWorth (config sits below keepalive's
		// tier; TestDefaultColdStartWorth keeps them equal).
		DefaultColdStartWorth: 10 * time.Minute,
		Auth:                  true,
		ONNXPool:              1,
		ONNXLoaded:            2,
		// One machine: 64 instances of one function and 256 in all keep
		// processes, threads, ports and pipes well short of what a
		// machine allows (each instance holds a few of each), where
		// 1,500 forks crashed the server; 16 starts at once keep a burst
		// from forking faster than instances can report ready.
		MaxInstancesPerFunction: 64,
		MaxInstances:            256,
		MaxConcurrentStarts:     16,
		// About 130 MB of SQLite (128 bytes a record with its indexes;
		// freed pages are reused): 17 minutes at 1,000 calls a second,
		// or the whole week of a function called every 0.6 s.
		RequestRecords:   1_000_000,
		BodyPreReadBytes: 1 << 20,
		BodyBufferBudget: 256 << 20,
		MinBodyRate:      1 << 10,
		ContainerNetwork: "bridge",
		// A created container holds a loopback port and the engine's
		// record of it, nothing running: 16 is cheap on any engine.
		ContainerPrewarm:   16,
		GPUs:               "auto",
		ContainerGPUDriver: "nvidia",
		Backend:            "local",
		KubeNetwork:        "pod",
		LeaseName:          "ember-controller",
		LeaseDuration:      15 * time.Second,
		LeaseRenewDeadline: 10 * time.Second,
		LeaseRetryPeriod:   2 * time.Second,
		JobLease:           30 * time.Second,
	}
}

// StoreKind returns the store c.Store names: "sqlite" with the database
// file's path, or "postgres" with the DSN. The error never quotes the
// value, which may hold a password.
func (c Config) StoreKind() (kind, where string, err error) {
	v := strings.TrimSpace(c.Store)
	scheme, rest, ok := strings.Cut(v, "://")
	switch {
	case v == "":
		return "sqlite", filepath.Join(c.DataDir, "ember.db"), nil
	case ok && scheme == "sqlite" && rest != "":
		return "sqlite", rest, nil
	case ok && (scheme == "postgres" || scheme == "postgresql"):
		return "postgres", v, nil
	case ok && scheme == "sqlite":
		return "", "", fmt.Errorf("store: sqlite:// needs a path, e.g. sqlite:///var/lib/ember/ember.db")
	}
	name := scheme
	if !ok {
		name = "(none)"
	}
	if len(name) > 20 {
		name = name[:20] + "…"
	}
	return "", "", fmt.Errorf("store: want sqlite://PATH or postgres://user:password@host:port/database (got scheme %q)", name)
}

// Knob documents one setting for --help and the README.
type Knob struct {
	Flag, Env, Help string
}

// Knobs lists every setting with its flag and environment variable.
func Knobs() []Knob {
	return []Knob{
		{"addr", "EMBER_ADDR", "listen address of the API"},
		{"data-dir", "EMBER_DATA_DIR", "directory for the database, instance logs and model cache"},
		{"grace", "EMBER_GRACE", "how long in-flight requests may run after SIGTERM"},
		{"drain-delay", "EMBER_DRAIN_DELAY", "how long /readyz fails before the listener closes on SIGTERM"},
		{"tick", "EMBER_TICK", "autoscaler decision interval"},
		{"store", "EMBER_STORE", "where state lives: sqlite://PATH (default <data-dir>/ember.db) or postgres://user:password@host:port/db?sslmode=… (PostgreSQL shared by several servers); pass a password through the environment variable, not the command line"},
		{"store-poll", "EMBER_STORE_POLL", "how often the store's change log is read, so functions, routes and key revocations written by another store handle apply here"},
		{"log-level", "EMBER_LOG_LEVEL", "debug, info, warn or error"},
		{"log-format", "EMBER_LOG_FORMAT", "text or json"},
		{"read-header-timeout", "EMBER_READ_HEADER_TIMEOUT", "cut off clients that send headers slower than this"},
		{"idle-timeout", "EMBER_IDLE_TIMEOUT", "close idle client keep-alive connections after this"},
		{"default-idle-timeout", "EMBER_DEFAULT_IDLE_TIMEOUT", "scaling.idle_timeout of functions deployed without one: auto (learned keep-warm and pre-warm) or a duration (default 120s)"},
		{"default-cold-start-worth", "EMBER_DEFAULT_COLD_START_WORTH", "scaling.cold_start_worth of functions that set none: what one cold start's wait is worth, as that much of the function's hardware time; idle_timeout: auto keeps instances warm while idle costs less (at most 24h)"},
		{"auth", "EMBER_AUTH", "require API keys (an admin key is written to <data-dir>/admin.key on first start); false only for local experiments"},
		{"open-metrics", "EMBER_OPEN_METRICS", "serve /metrics without a key (/healthz and /readyz never need one)"},
		{"webhook-allow-private", "EMBER_WEBHOOK_ALLOW_PRIVATE", "let webhooks reach loopback and private addresses (refused by default; link-local, e.g. cloud metadata, is always refused)"},
		{"webhook-allow", "EMBER_WEBHOOK_ALLOW", "comma-separated CIDRs or addresses of loopback/private networks webhooks may reach, e.g. 127.0.0.1/32"},
		{"cache-dir", "EMBER_CACHE_DIR", "model and runtime cache, shared by servers (default <user cache dir>/ember: $XDG_CACHE_HOME/ember or ~/.cache/ember on Linux, ~/Library/Caches/ember on macOS)"},
		{"onnx-pool", "EMBER_ONNX_POOL", "pre-started ONNX workers (runtime loaded, no model) kept once an onnx function exists; 0 = off"},
		{"onnx-loaded", "EMBER_ONNX_LOADED", "onnx workers kept with their model loaded after their function scales to zero, for its next cold start within its keep-warm window (metered to the function; the oldest goes first); 0 = off"},
		{"onnx-threads", "EMBER_ONNX_THREADS", "ONNX Runtime intra-op threads per session in each onnx instance; 0 = one per core"},
		{"ort-lib", "EMBER_ORT_LIB", "ONNX Runtime shared library (default: fetched from npm onnxruntime-node into the cache)"},
		{"inherit-env", "EMBER_INHERIT_ENV", "server environment variables instances inherit besides PATH, HOME, LANG and TZ (comma-separated names; EMBER_* never pass)"},
		{"tls-cert", "EMBER_TLS_CERT", "TLS certificate file (with --tls-key: serve HTTPS)"},
		{"tls-key", "EMBER_TLS_KEY", "TLS private key file"},
		{"max-instances-per-function", "EMBER_MAX_INSTANCES_PER_FUNCTION", "most instances of one function; specs asking for more (scaling.min/max) are refused at deploy"},
		{"max-instances", "EMBER_MAX_INSTANCES", "most live instances across all functions; a start beyond it waits, or is refused with 503 when the function has none"},
		{"max-concurrent-starts", "EMBER_MAX_CONCURRENT_STARTS", "most instance starts in progress at once; the others wait their turn"},
		{"request-records", "EMBER_REQUEST_RECORDS", "per-request usage records kept in the store (the newest; none older than 7 days); 0 = none (the hourly and daily rollups count every request either way)"},
		{"body-preread-bytes", "EMBER_BODY_PREREAD_BYTES", "request bodies up to this size are read before an instance slot is taken (larger ones stream); 0 = never"},
		{"body-buffer-budget", "EMBER_BODY_BUFFER_BUDGET", "bytes of pre-read request bodies held at once across the server; beyond it 503 with Retry-After"},
		{"min-body-rate", "EMBER_MIN_BODY_RATE", "slowest request body (bytes/s, after a 10 s grace) before the sender is cut with 408; 0 = off"},
		{"container-host", "EMBER_CONTAINER_HOST", "Docker Engine API endpoint for runtime: container (Docker or `podman system service`); default $DOCKER_HOST, /var/run/docker.sock, then /run/podman/podman.sock"},
		{"container-network", "EMBER_CONTAINER_NETWORK", "bridge (own network, port published on 127.0.0.1) or host (host network, the image listens on $PORT)"},
		{"container-ulimit", "EMBER_CONTAINER_ULIMIT", "ulimits set on every container, name=soft:hard, comma-separated (e.g. nofile=1024:1024,nproc=1024:1024 where the engine lacks CAP_SYS_RESOURCE); default: the engine's"},
		{"container-oci-runtime", "EMBER_CONTAINER_OCI_RUNTIME", "the engine's OCI runtime for containers, e.g. runc; default: the engine's"},
		{"container-allow-host-path", "EMBER_CONTAINER_ALLOW_HOST_PATH", "host directories container specs may mount as host_path (comma-separated); none by default"},
		{"container-prewarm", "EMBER_CONTAINER_PREWARM", "most container functions at zero whose next container is created ahead (not started) so a cold start skips the engine's create; 0 = off; GPU functions never"},
		{"container-gpu-driver", "EMBER_CONTAINER_GPU_DRIVER", "how containers get their GPUs: nvidia (device request to the NVIDIA Container Toolkit) or cdi (CDI names nvidia.com/gpu=<uuid>)"},
		{"backend", "EMBER_BACKEND", "where instances run: local (processes, ONNX workers and containers on this machine) or kubernetes (one Pod per instance)"},
		{"kubeconfig", "EMBER_KUBECONFIG", "kubeconfig of the cluster for --backend kubernetes and the gateway/controller roles; default: in-cluster config, then $KUBECONFIG, then ~/.kube/config"},
		{"kube-namespace", "EMBER_KUBE_NAMESPACE", "namespace of instance Pods, their Secrets and the roles' Leases; default: Ember's own Pod's namespace, else default"},
		{"kube-network", "EMBER_KUBE_NETWORK", "pod (Pod IP and the function's fixed port) or host (hostNetwork Pods on Ember-assigned ports)"},
		{"kube-worker-image", "EMBER_KUBE_WORKER_IMAGE", "Ember's own image, run in worker mode by onnx functions' Pods on Kubernetes"},
		{"kube-models", "EMBER_KUBE_MODELS", "volume every onnx worker Pod mounts read-only for its models: pvc:<claim> (at /models) or an absolute host path (at the same path)"},
		{"admin-key-file", "EMBER_ADMIN_KEY_FILE", "file holding an admin key (a mounted Kubernetes Secret, mode 0400/0440; make one with `ember keys generate`): made an admin key of the store at start, idempotently on every replica; no <data-dir>/admin.key is written"},
		{"cluster-token-file", "EMBER_CLUSTER_TOKEN_FILE", "file holding the cluster token (≥ 32 bytes, e.g. openssl rand -hex 32) that gateways and controllers present to each other on /internal/v1/ routes; or set EMBER_CLUSTER_TOKEN to the token itself"},
		{"lease-name", "EMBER_LEASE_NAME", "the coordination.k8s.io Lease in --kube-namespace that controllers elect their leader with, and gateways read to find it"},
		{"lease-duration", "EMBER_LEASE_DURATION", "how long a leader's Lease holds without renewal before another controller may take it (failover time)"},
		{"lease-renew-deadline", "EMBER_LEASE_RENEW_DEADLINE", "how long the leader keeps retrying a renewal before it stops leading (and exits); below --lease-duration"},
		{"lease-retry-period", "EMBER_LEASE_RETRY_PERIOD", "how often controllers try to take or renew the Lease"},
		{"job-lease", "EMBER_JOB_LEASE", "how long a job a worker claimed stays leased without a heartbeat (renewed every third of it): the jobs of a server that died are run elsewhere after this long; 1s–10m"},
		{"advertise-addr", "EMBER_ADVERTISE_ADDR", "host:port other nodes reach this controller on, written into the Lease; default $POD_IP with --addr's port, else --addr"},
		{"node-name", "EMBER_NODE_NAME", "this node's name in the Lease and in gateway reports; default $POD_NAME, else the host name"},
		{"gpus", "EMBER_GPUS", "GPU inventory: auto (nvidia-smi; none without it), off (resources.gpu only meters and prices; no GPU is checked or assigned) or file:PATH (nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits output)"},
	}
}

// Validate checks c and names the field at fault.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %q is not host:port: %w", c.Addr, err)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return fmt.Errorf("data-dir: must not be empty")
	}
	if _, _, err := c.StoreKind(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"grace", c.Grace, 0}, {"drain-delay", c.DrainDelay, 0}, {"tick", c.Tick, 10 * time.Millisecond},
		{"store-poll", c.StorePoll, 10 * time.Millisecond},
		{"read-header-timeout", c.ReadHeaderTimeout, time.Millisecond}, {"idle-timeout", c.IdleTimeout, time.Millisecond}} {
		if d.v < d.min {
			return fmt.Errorf("%s: must be ≥ %s (got %s)", d.name, d.min, d.v)
		}
	}
	if c.DefaultColdStartWorth <= 0 || c.DefaultColdStartWorth > 24*time.Hour {
		return fmt.Errorf("default-cold-start-worth: want a duration in (0, 24h] such as 10m (got %s)", c.DefaultColdStartWorth)
	}
	if v := c.DefaultIdleTimeout; v != "" && v != "auto" {
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			return fmt.Errorf("default-idle-timeout: want auto or a duration ≥ 0 such as 120s or 10m (got %q)", v)
		}
	}
	if c.ONNXThreads < 0 {
		return fmt.Errorf("onnx-threads: must be ≥ 0 (got %d)", c.ONNXThreads)
	}
	if c.ONNXPool < 0 {
		return fmt.Errorf("onnx-pool: must be ≥ 0 (got %d)", c.ONNXPool)
	}
	if c.ONNXLoaded < 0 || c.ONNXLoaded > 64 {
		return fmt.Errorf("onnx-loaded: must be 0–64 (got %d)", c.ONNXLoaded)
	}
	for _, name := range c.InheritEnv {
		switch {
		case !envNameRE.MatchString(name):
			return fmt.Errorf("inherit-env: invalid variable name %q (want [A-Za-z_][A-Za-z0-9_]*)", name)
		case strings.HasPrefix(name, "EMBER_"):
			return fmt.Errorf("inherit-env: %s: the server's EMBER_* variables never pass to instances", name)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
		min  int64
	}{{"max-instances-per-function", int64(c.MaxInstancesPerFunction), 1}, {"max-instances", int64(c.MaxInstances), 1},
		{"max-concurrent-starts", int64(c.MaxConcurrentStarts), 1}, {"body-preread-bytes", c.BodyPreReadBytes, 0},
		{"body-buffer-budget", c.BodyBufferBudget, 0}, {"min-body-rate", c.MinBodyRate, 0},
		{"container-prewarm", int64(c.ContainerPrewarm), 0}, {"request-records", int64(c.RequestRecords), 0}} {
		if n.v < n.min {
			return fmt.Errorf("%s: must be ≥ %d (got %d)", n.name, n.min, n.v)
		}
	}
	// A billion records is about 128 GB of SQLite: past that the bound
	// no longer bounds anything a machine has.
	if c.RequestRecords > 1_000_000_000 {
		return fmt.Errorf("request-records: must be ≤ 1000000000 (got %d)", c.RequestRecords)
	}
	if c.BodyPreReadBytes > c.BodyBufferBudget {
		return fmt.Errorf("body-preread-bytes: must be ≤ body-buffer-budget (got %d > %d)", c.BodyPreReadBytes, c.BodyBufferBudget)
	}
	switch c.ContainerNetwork {
	case "bridge", "host":
	default:
		return fmt.Errorf("container-network: want bridge or host (got %q)", c.ContainerNetwork)
	}
	switch c.Backend {
	case "local", "kubernetes":
	default:
		return fmt.Errorf("backend: want local or kubernetes (got %q)", c.Backend)
	}
	switch c.KubeNetwork {
	case "pod", "host":
	default:
		return fmt.Errorf("kube-network: want pod or host (got %q)", c.KubeNetwork)
	}
	if c.ClusterTokenFile != "" && c.ClusterToken != "" {
		return fmt.Errorf("cluster-token-file and EMBER_CLUSTER_TOKEN: set one, not both")
	}
	if c.AdminKeyFile != "" && !c.Auth {
		return fmt.Errorf("admin-key-file: needs --auth (it is off)")

	}
	if c.LeaseDuration <= c.LeaseRenewDeadline || c.LeaseRenewDeadline <= c.LeaseRetryPeriod || c.LeaseRetryPeriod <= 0 {
		return fmt.Errorf("lease-duration, lease-renew-deadline, lease-retry-period: want duration > renew deadline > retry period > 0 (got %s, %s, %s)",
			c.LeaseDuration, c.LeaseRenewDeadline, c.LeaseRetryPeriod)
	}
	if c.JobLease < time.Second || c.JobLease > 10*time.Minute {
		return fmt.Errorf("job-lease: want a duration in [1s, 10m] (got %s)", c.JobLease)
	}
	for _, u := range c.ContainerUlimits {
		if !ulimitRE.MatchString(u) {
			return fmt.Errorf("container-ulimit: want name=soft:hard, e.g. nofile=1024:1024 (got %q)", u)
		}
	}
	switch {
	case c.GPUs == "auto", c.GPUs == "off":
	case strings.HasPrefix(c.GPUs, "file:") && filepath.IsAbs(strings.TrimPrefix(c.GPUs, "file:")):
	default:
		return fmt.Errorf("gpus: want auto, off or file:/absolute/path (got %q)", c.GPUs)
	}
	switch c.ContainerGPUDriver {
	case "nvidia", "cdi":
	default:
		return fmt.Errorf("container-gpu-driver: want nvidia or cdi (got %q)", c.ContainerGPUDriver)
	}
	for _, p := range c.ContainerAllowHostPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("container-allow-host-path: want an absolute, clean path (got %q)", p)
		}
	}
	if _, err := c.WebhookAllowPrefixes(); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("tls-cert and tls-key: set both or neither")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: want debug, info, warn or error (got %q)", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log-format: want text or json (got %q)", c.LogFormat)
	}
	return nil
}

// envNameRE is a portable environment variable name (spec.ValidEnvName's
// rule; config imports std only).
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ulimitRE is docker run's --ulimit syntax: name=soft[:hard].
var ulimitRE = regexp.MustCompile(`^[a-z]+=[0-9]+(:[0-9]+)?$`)

// WebhookAllowPrefixes parses WebhookAllow; a bare address is its own /32
// or /128.
func (c Config) WebhookAllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range c.WebhookAllow {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("webhook-allow: %q is not a CIDR or an IP address", v)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Cache returns the model cache directory.
func (c Config) Cache() string {
	if c.CacheDir != "" {
		return c.CacheDir
	}
	// One cache for every data dir on the machine (a 300 MB runtime and
	// model each, otherwise); <data-dir>/cache only where the user has no
	// cache dir (no $HOME).
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ember")
	}
	return filepath.Join(c.DataDir, "cache")
}
