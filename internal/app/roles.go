package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cluster"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/kube"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/usage"
)

// The roles: `ember gateway` (API, auth, activator, proxy, jobs; N
// replicas) and `ember controller` (autoscaler and instance manager on the
// elected leader). Both share newCore with `ember serve`.

// Gateway runs `ember gateway` until ctx ends: `ember serve`'s API over
// the leader controller's endpoints, within this gateway's shares.
func Gateway(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(addr string)) error {
	return runAPI(ctx, cfg, roleGateway, logger, ready, nil)
}

// requireClusterToken is the node-to-node credential the roles cannot
// run without (serve runs without one: it has no /internal/v1/ routes).
func requireClusterToken(cfg config.Config) (*auth.ClusterToken, error) {
	tok, err := clusterToken(cfg)
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, errors.New("cluster credential: set EMBER_CLUSTER_TOKEN or --cluster-token-file (the same secret on every gateway and controller)")
	}
	return tok, nil
}

// nodeName is this node's name: --node-name, $POD_NAME, the host name.
func nodeName(cfg config.Config) string {
	if cfg.NodeName != "" {
		return cfg.NodeName
	}
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "ember"
}

// advertiseAddr is where other nodes reach this one: --advertise-addr,
// $POD_IP with the bound port, else the bound address.
func advertiseAddr(cfg config.Config, bound net.Addr) string {
	if cfg.AdvertiseAddr != "" {
		return cfg.AdvertiseAddr
	}
	_, port, _ := net.SplitHostPort(bound.String())
	if ip := os.Getenv("POD_IP"); ip != "" {
		return net.JoinHostPort(ip, port)
	}
	return bound.String()
}

func functionNames(ctl *controller.Controller) []string {
	fs := ctl.List()
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

// newMember builds a gateway's side of the protocol; the leader is found
// from the Lease.
func newMember(ctx context.Context, cfg config.Config, logger *slog.Logger) (*cluster.Gateway, error) {
	client, ns, err := connectKube(cfg)
	if err != nil {
		return nil, err
	}
	token, err := requireClusterToken(cfg)
	if err != nil {
		return nil, err
	}
	return cluster.NewGateway(cluster.GatewayOptions{
		ID: cluster.Identity(nodeName(cfg), cfg.Addr),
		Leader: func(ctx context.Context) (string, error) {
			return cluster.LeaderAddr(ctx, client, ns, cfg.LeaseName)
		},
		Token:  token.Header(),
		Logger: logger.With("component", "cluster"),
	}), nil
}

func connectKube(cfg config.Config) (kubernetes.Interface, string, error) {
	client, _, ns, err := kube.Connect(cfg.Kubeconfig, cfg.KubeNamespace)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes (the roles keep their Lease there): %w", err)
	}
	return client, ns, nil
}

// gatewayCapacity is a gateway's activator.Capacity: specs from its own
// registry (the store watch), endpoints and health from the leader.
type gatewayCapacity struct {
	specs *instance.Manager
	*cluster.Gateway
}

func (c gatewayCapacity) Function(name string) (*spec.Function, bool) { return c.specs.Function(name) }

var _ activator.Capacity = gatewayCapacity{}

// gatewayInstances is a gateway's gateway.Instances: its own manager holds
// no instances, so what a deploy waits on (Prove, Rollout), a function's
// counts, and its instances and logs come from the leader.
type gatewayInstances struct {
	instancesView
	member *cluster.Gateway
	logger *slog.Logger
}

// leaderRead bounds a user's instance or log read through the leader.
const leaderRead = 5 * time.Second

func (v gatewayInstances) Instances(fn string) ([]api.Instance, bool) {
	if _, ok := v.Manager.Function(fn); !ok {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaderRead)
	defer cancel()
	list, err := v.member.Instances(ctx, fn)
	if err != nil && !errors.Is(err, cluster.ErrNotFound) {
		// The API shape has no error here: the list reads empty, and the
		// log says why.
		v.logger.Warn("list instances from the leader", "function", fn, "err", err)
	}
	return list, true
}

func (v gatewayInstances) Instance(id string) (api.Instance, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), leaderRead)
	defer cancel()
	in, err := v.member.Instance(ctx, id)
	if err != nil {
		if !errors.Is(err, cluster.ErrNotFound) {
			v.logger.Warn("read an instance from the leader", "instance", id, "err", err)
		}
		return api.Instance{}, false
	}
	return in, true
}

func (v gatewayInstances) Logs(fn string, tail int) ([]api.LogLine, error) {
	ctx, cancel := context.WithTimeout(context.Background(), leaderRead)
	defer cancel()
	lines, err := v.member.Logs(ctx, fn, tail)
	if err != nil && !errors.Is(err, cluster.ErrNotFound) {
		return nil, &errkind.Error{Kind: errkind.Unavailable, Code: "leader_unavailable", RetryAfter: time.Second, Err: err,
			Msg: "cannot read the logs from the leader controller, which runs the instances; retry shortly"}
	}
	return lines, nil
}

func (v gatewayInstances) Prove(fn string, version int64) { v.member.Prove(fn, version) }

// Exited is asked after a request could not reach instance id: the
// gateway cannot see the instance (the leader does), so it stops using it
// until the leader's next word and reports no exit reason.
func (v gatewayInstances) Exited(id string, _ time.Duration) (error, bool) {
	v.member.Suspect(id)
	return nil, false
}

func (v gatewayInstances) Rollout(fn string) (api.Rollout, bool) { return v.member.Rollout(fn) }

func (v gatewayInstances) Status(fn string, now time.Time) (api.FunctionStatus, bool) {
	if _, ok := v.Manager.Function(fn); !ok {
		return api.FunctionStatus{}, false
	}
	ready := len(v.member.Endpoints(fn))
	live, _, failing := v.member.Health(fn)
	s := api.FunctionStatus{State: api.FunctionScaledToZero, Ready: ready, Starting: max(live-ready, 0)}
	switch {
	case failing != nil:
		s.State, s.LastError = api.FunctionFailing, failing.Error()
	case ready > 0:
		s.State = api.FunctionReady
	case live > 0:
		s.State = api.FunctionStarting
	}
	return s, true
}

var _ gateway.Instances = gatewayInstances{}

// sampleDemand adapts the activator's Sample to the gateway's reports.
func sampleDemand(act *activator.Activator) func(string) (float64, int, int) {
	return func(fn string) (float64, int, int) {
		s := act.Sample(fn)
		return s.Average, s.InFlight, s.Queued
	}
}

// controllerRoutes registers a controller's routes on t: the probes,
// /metrics (the instance manager's: cold starts, instance states; an API
// key with the metrics scope, as on a gateway) and the leader's protocol
// behind the cluster credential.
func controllerRoutes(t *auth.Table, l *cluster.Leader, token *auth.ClusterToken, ready func() bool, metrics http.Handler) {
	t.Register("GET /metrics", auth.RightMetrics, metrics)
	t.Register("GET /healthz", auth.RightPublic, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	t.Register("GET /readyz", auth.RightPublic, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	l.Handle(func(pattern string, h http.Handler) { t.Register(pattern, auth.RightCluster, h) })
}

// clusterFront puts the cluster guard in front of the table for
// /internal/: the guard admits only the cluster token and marks the
// request, and the table's RightCluster check then finds the mark. Other
// paths reach the table through keys (the API-key authenticator, or
// nothing with --auth=false) and unmarked, so the token opens nothing
// else and an API key opens no /internal/ route.
func clusterFront(token *auth.ClusterToken, table http.Handler, keys func(http.Handler) http.Handler) http.Handler {
	guarded := auth.Cluster(token)(table)
	public := keys(table)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/internal/") {
			guarded.ServeHTTP(w, r)
			return
		}
		public.ServeHTTP(w, r)
	})
}

// Controller runs `ember controller` until ctx ends or, having led, it
// loses the Lease (cluster.ErrLostLeadership: the process exits, as
// kube-controller-manager does, so nothing it started acts beside the new
// leader). Only the leader scales: on gaining the Lease it loads the
// functions, adopts the instances the driver already runs (by label),
// follows the store and runs the control loop; a standby answers the
// gateways' /internal/v1/ calls with 503 naming the holder.
func Controller(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(addr string)) error {
	c, err := newCore(ctx, cfg, roleController, logger)
	if err != nil {
		return err
	}
	defer c.close()
	client, ns, err := connectKube(cfg)
	if err != nil {
		return err
	}
	token, err := requireClusterToken(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	identity := cluster.Identity(nodeName(cfg), advertiseAddr(cfg, ln.Addr()))

	var election *cluster.Election
	leader := cluster.NewLeader(cluster.LeaderOptions{
		Instances: c.mgr,
		Functions: func() []string { return functionNames(c.ctl) },
		Demand: func(gw, fn string, avg float64, cur int, at time.Time) {
			c.demand.Report(controller.Report{Source: gw, Function: fn, Average: avg, Current: cur, At: at})
		},
		Wake:    c.ctl.Wake,
		Touch:   c.mgr.Touch,
		Prove:   c.mgr.Prove,
		Rollout: c.mgr.Rollout,
		Views:   instancesView{c.mgr},
		Budget: func(fn string, now time.Time) *api.BudgetStatus {
			if f, ok := c.mgr.Function(fn); !ok || f.Budget == nil {
				return nil
			}
			return usage.Budgets{Source: c.meter}.Budget(fn, now)
		},
		Leading: func() (bool, string) { return election.Leading() },
		Logger:  logger.With("component", "cluster"),
	})
	c.mgr.SetNotify(leader.Changed)
	table := auth.NewTable(nil)
	keys := func(h http.Handler) http.Handler { return h }
	if cfg.Auth {
		table.Enforce(cfg.OpenMetrics)
		keys = auth.New(c.db, auth.Options{Logger: logger.With("component", "auth")}).Middleware
	}
	draining := make(chan struct{})
	controllerRoutes(table, leader, token, func() bool {
		select {
		case <-draining:
			return false
		default:
			return true
		}
	}, c.metrics.Handler())
	srv := &http.Server{Handler: clusterFront(token, table, keys), ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}

	leadDone := make(chan error, 1)
	var led atomic.Bool
	election, err = cluster.NewElection(cluster.ElectOptions{Client: client, Namespace: ns, Name: cfg.LeaseName,
		Identity: identity, LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.LeaseRenewDeadline,
		RetryPeriod: cfg.LeaseRetryPeriod, Logger: logger.With("component", "election")},
		func(lctx context.Context) { led.Store(true); leadDone <- c.lead(lctx) })
	if err != nil {
		return err
	}
	logger.Info("ember controller", "addr", ln.Addr().String(), "identity", identity, "lease", ns+"/"+cfg.LeaseName)
	if ready != nil {
		ready(ln.Addr().String())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		err := election.Run(gctx)
		srv.Close()
		return err
	})
	err = g.Wait()
	close(draining)
	if led.Load() {
		// It led: its term's context has ended; wait for its loops (the
		// control loop, the store watch) to stop before instances do.
		select {
		case lerr := <-leadDone:
			if lerr != nil && err == nil {
				err = lerr
			}
		case <-time.After(15 * time.Second):
			logger.Warn("the leader's loops did not stop within 15 s")
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if c.drv.adopts() {
		logger.Info("leaving instances running for the next leader to adopt")
	} else {
		c.mgr.Shutdown(stopCtx) // they could not be adopted: do not leak them
	}
	c.drv.onnx.Close(stopCtx)
	if ferr := c.meter.Close(stopCtx); ferr != nil {
		logger.Error("metering: last flush", "err", ferr)
	}
	logger.Info("ember controller stopped")
	return err
}

// lead is the leader's term: it loads the functions, adopts running
// instances, follows the store and runs the control loop and metering,
// until ctx ends (leadership lost or shutdown).
func (c *core) lead(ctx context.Context) error {
	changeHead, err := c.load(ctx, false)
	if err != nil {
		return err
	}
	c.reclaim(ctx)
	// After reclaim: the pool's Pods an earlier leader left are deleted
	// there as leftovers, and this leader's own must not be among them.
	c.warm()
	g, gctx := errgroup.WithContext(ctx)
	changes, err := c.st.watch(gctx, changeHead, c.cfg.StorePoll, c.logger.With("component", "store"))
	if err != nil {
		return err
	}
	fol := follower{functions: c.ctl.Sync, routes: func(context.Context) error { return nil }, logger: c.logger.With("component", "store")}
	g.Go(func() error { return fol.follow(gctx, changes) })
	g.Go(func() error { return c.ctl.Run(gctx) })
	g.Go(func() error { return c.meter.Run(gctx) })
	return g.Wait()
}

// reclaim adopts the instances the driver runs for deployed functions'
// current versions and stops the others (driver.Reclaim), so a new leader
// starts no duplicates. A kept instance counts as starting until its
// probe (its Pod running, then its health path) passes, within the
// function's start_timeout like any start; one that fails it is stopped.
// The probes run behind the manager, so the control loop starts without
// waiting for a Pod still pulling its image, and each waits only for its
// own Pod (the driver already watches each since Adopt).
func (c *core) reclaim(ctx context.Context) {
	start := time.Now()
	versions := map[string]int64{}
	for _, f := range c.ctl.List() {
		versions[f.Name] = f.Version
	}
	kept, err := driver.Reclaim(ctx, c.drv, func(l driver.Labels) bool { return versions[l.Function] == l.Version })
	if err != nil {
		c.logger.Warn("reclaim instances", "err", err)
	}
	var unwanted []driver.Instance
	adopted := 0
	for _, a := range kept {
		f, ok := c.mgr.Function(a.Labels.Function)
		if !ok {
			unwanted = append(unwanted, a.Instance)
			continue
		}
		s := instance.StartSpecFor(f, a.Labels.Version, a.Labels.Instance)
		await := func(ctx context.Context) error {
			if err := c.drv.awaitAdopted(ctx, a.Instance, s); err != nil {
				return fmt.Errorf("adopted instance failed its probe: %w", err)
			}
			return nil
		}
		if !c.mgr.Adopt(a.Labels.Function, a.Labels.Version, a.Labels.Instance, a.Instance, await) {
			unwanted = append(unwanted, a.Instance)
			continue
		}
		adopted++
	}
	var g errgroup.Group
	for _, in := range unwanted {
		g.Go(func() error { stopAdopted(ctx, in); return nil })
	}
	g.Wait()
	// Each adopted instance is ready (or failed, and stopped) once its
	// probe ends: the manager logs that per instance.
	c.logger.Info("adopted running instances", "count", adopted, "stopped_unwanted", len(unwanted),
		"listed_current", len(kept), "took", time.Since(start).Round(time.Millisecond))
}

// stopAdopted stops an instance reclaim lists but does not keep.
func stopAdopted(ctx context.Context, in driver.Instance) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = in.Stop(sctx)
}
