// Package app is Ember's composition root: it reads the server config,
// opens the store, picks drivers, wires the instance manager, activator,
// controller, gateway and telemetry, runs them, and drains them in order on
// shutdown. It is the only package that imports adapters (driver/*, store/*,
// telemetry).
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cluster"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/dashboard"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/gateway/replicate"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/routing"
	"github.com/ember-run/ember/internal/telemetry"
	"github.com/ember-run/ember/internal/usage"
	"github.com/ember-run/ember/internal/webhook"
)

// NewLogger builds the server's logger from the config.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Serve runs the server until ctx ends, then drains: readiness fails, the
// listener closes after DrainDelay, in-flight requests get up to Grace to
// finish, and every instance is stopped. ready, if not nil, receives the
// bound address once the server accepts connections.
func Serve(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(addr string)) error {
	return serve(ctx, cfg, logger, ready, nil)
}

// role is what a process runs: everything (serve), the API side
// (gateway), or the scaling side (controller, roles.go).
type role int

const (
	roleServe role = iota
	roleGateway
	roleController
)

func (r role) String() string {
	return [...]string{"ember serve", "ember gateway", "ember controller"}[r]
}

// core is the wiring every role shares: the store, the drivers, the
// instance manager with its observers and metering, and the controller's
// registry of functions. close releases it in order.
type core struct {
	cfg     config.Config
	logger  *slog.Logger
	st      *stores
	db      records
	drv     *runtimes
	mgr     *instance.Manager
	metrics *telemetry.Metrics
	meter   *metering.Meter
	prices  *cost.Catalogue
	obs     observers
	dashRec *dashboard.Recorder
	demand  *controller.DemandReports
	ctl     *controller.Controller
	closers []func()
}

// close runs the cleanups last-registered first.
func (c *core) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// newCore opens the data dir, the store and the drivers and builds the
// manager, metering and controller. On error what was opened is closed.
func newCore(ctx context.Context, cfg config.Config, r role, logger *slog.Logger) (_ *core, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Checked here so a bad token stops every role the same way; the
	// roles that serve /internal/v1/ mount the cluster guard with it.
	if _, err := clusterToken(cfg); err != nil {
		return nil, err
	}
	c := &core{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	lock, err := openDataDir(cfg, logger, r.String())
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, func() { lock.Release() }) // after the store closes
	if n, err := models.CleanPartial(cfg.Cache()); err != nil {
		logger.Warn("partial model downloads could not be cleaned", "err", err)
	} else if n > 0 {
		logger.Info("removed partial model downloads left by an interrupted pull", "count", n, "cache", cfg.Cache())
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, st.close)
	c.st, c.db = st, st.records

	guard := startGuard(cfg, logger)
	if guard != nil {
		c.closers = append(c.closers, func() { guard.Close() }) // last: every instance is stopped by then
	}
	rcfg := cfg
	if r == roleGateway {
		// A gateway starts no instances: the leader keeps the onnx pools.
		rcfg.ONNXPool, rcfg.ONNXLoaded = 0, 0
	}
	drv, err := newRuntimes(rcfg, logger, guard, c.db)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, func() { drv.onnx.Close(context.Background()) }, func() { drv.container.Close() }, drv.closeKube)
	c.drv = drv
	if r == roleServe {
		drv.cleanupKube(logger)
	}
	prep := &preparer{cfg: cfg, rt: drv, logger: logger.With("component", "prepare")}
	opts := instance.Options{
		Logs:           &instance.FileLogs{Dir: filepath.Join(cfg.DataDir, "logs")},
		MaxPerFunction: cfg.MaxInstancesPerFunction,
		MaxTotal:       cfg.MaxInstances,
		MaxStarting:    cfg.MaxConcurrentStarts,
		MaxPrewarmed:   cfg.ContainerPrewarm,
	}
	if r == roleGateway {
		opts.MaxPrewarmed = 0 // a gateway's manager only holds specs: the leader starts instances
	}
	c.mgr = instance.New(drv, logger.With("component", "instance"), opts)
	c.metrics = telemetry.New(c.mgr)
	// --- metering (issue #6): usage accounting beside the metrics ---
	if c.prices, err = loadPrices(cfg.DataDir); err != nil {
		return nil, err
	}
	drv.hardware = func(class string) bool { return len(c.prices.ForHardware(class)) > 0 }
	c.meter = metering.New(st.usage, meterProfiles(c.mgr, c.prices),
		logger.With("component", "metering"), metering.Options{NoRequestRecords: cfg.RequestRecords == 0})
	starts := &coldStarts{}
	c.dashRec = dashboard.NewRecorder() // the /ui pages' bounded history
	c.obs = observers{metrics: c.metrics, meter: c.meter, starts: starts, dash: c.dashRec}
	c.mgr.SetObserver(c.obs)
	drv.onnx.SetObserver(c.obs) // pooled workers are metered while they wait
	// --- end metering ---
	// Demand reaches the controller through reports that sum gateways:
	// this server's activator in process (serve), or the gateways'
	// reports (controller; a gateway silent for 3 s stops counting).
	c.demand = controller.NewDemandReports(cluster.DefaultLive)
	keepWarm, err := keepWarmOptions(cfg, c.prices, starts, c.metrics, c.db)
	if err != nil {
		return nil, err
	}
	c.ctl = controller.New(c.db, c.mgr, c.demand, logger.With("component", "controller"), controller.Options{Tick: cfg.Tick, Validate: drv.Validate, Prepare: prep.Prepare, Budgets: c.meter, KeepWarm: keepWarm,
		Passive: r == roleGateway})
	return c, nil
}

// load restores the deployed functions; it returns the change log's head
// taken before, so the watch started from it misses nothing written while
// they load (what is seen twice is a no-op).
func (c *core) load(ctx context.Context, warm bool) (int64, error) {
	changeHead, err := c.db.ChangeHead(ctx)
	if err != nil {
		return 0, err
	}
	if err := c.ctl.Load(ctx); err != nil {
		return 0, err
	}
	if warm {
		c.warm()
	}
	return changeHead, nil
}

// warm fills the onnx worker pool when onnx functions exist (a restart,
// or a new leader).
func (c *core) warm() {
	for _, f := range c.ctl.List() {
		if f.Runtime == "onnx" {
			c.drv.onnx.Warm()
			return
		}
	}
}

// serve is Serve; routes, if not nil, receives the authorization table
// (every route with its right) just before ready.
func serve(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(addr string), routes func([]auth.Route)) error {
	return runAPI(ctx, cfg, roleServe, logger, ready, routes)
}

// runAPI runs `ember serve` (r == roleServe: API, activator, controller
// and instances in one process) or `ember gateway` (the API and the
// activator over the leader controller's endpoints, cluster.Gateway).
func runAPI(ctx context.Context, cfg config.Config, r role, logger *slog.Logger, ready func(addr string), routes func([]auth.Route)) error {
	c, err := newCore(ctx, cfg, r, logger)
	if err != nil {
		return err
	}
	defer c.close()
	st, db, drv, mgr, meter, metrics, obs, ctl, prices := c.st, c.db, c.drv, c.mgr, c.meter, c.metrics, c.obs, c.ctl, c.prices
	var act *activator.Activator
	var member *cluster.Gateway
	if r == roleGateway {
		member, err = newMember(ctx, cfg, logger)
		if err != nil {
			return err
		}
		act = activator.New(gatewayCapacity{specs: mgr, Gateway: member}, member)
		member.SetSource(sampleDemand(act), func() []string { return functionNames(ctl) }, act.Notify)
	} else {
		act = activator.New(mgr, ctl)
		c.demand.Add(act)
		mgr.SetNotify(act.Notify)
	}
	changeHead, err := c.load(ctx, r == roleServe)
	if err != nil {
		return err
	}
	px := proxy.New()
	defer px.Close()
	// The first request to a new instance goes on the connection its
	// readiness probe left open: no second connect and accept.
	mgr.SetReady(func(di driver.Instance) {
		if h, ok := di.(driver.ConnHandoff); ok {
			if c := h.TakeConn(); c != nil {
				px.Adopt(di.Addr(), c)
			}
		}
	})
	routeCosts := routing.Costs{Functions: mgr, Meter: meter, Catalogue: prices}
	routeSvc, err := routing.New(ctx, routing.Options{Store: db, Observer: metrics, Secrets: db,
		Cost:       routeCosts,
		IsFunction: func(name string) bool { _, ok := mgr.Function(name); return ok },
		Logger:     logger.With("component", "routing")})
	if err != nil {
		return err
	}
	defer routeSvc.Close()
	var instances gateway.Instances = instancesView{mgr}
	var budgets gateway.Budgets = usage.Budgets{Source: meter}
	if member != nil {
		budgets = member // the leader's metering sees every instance
		instances = gatewayInstances{instancesView{mgr}, member, logger.With("component", "cluster")}
		// Route windows count every gateway's calls (through the
		// leader), so QPS and cost decisions see the total.
		member.SetRoutes(routeSvc.Calls, routeSvc.Record)
	}
	gw := gateway.New(gateway.Options{Invoker: act, Registry: registryView{ctl}, Instances: instances,
		Forwarder: px, Observer: obs, Costs: meter, Routes: routeSvc, Secrets: db, Budgets: budgets,
		MaxPerFunction: cfg.MaxInstancesPerFunction, Inputs: drv.container, Versions: db,
		Bodies: gateway.BodyLimits{PreRead: cfg.BodyPreReadBytes, Budget: cfg.BodyBufferBudget,
			MinRate: cfg.MinBodyRate, Grace: 10 * time.Second},
		Auth: cfg.Auth, OpenMetrics: cfg.OpenMetrics,
		Logger: logger.With("component", "gateway")})
	if member != nil {
		// Keys' and functions' limits hold in total across the live
		// gateways: each enforces its 1/N share (N from the leader).
		gw.Limiter().ShareWith(member)
	}
	gw.Register("GET /metrics", auth.RightMetrics, metrics.Handler())
	// File outputs of protocol cog functions: the 128-bit id in the link
	// is the capability, as with Replicate's delivery URLs.
	gw.Register("GET /v1/files/{id}", auth.RightPublic, drv.container.CogFiles())
	authenticate, limitKeys, authn, err := secure(ctx, cfg, db, gw, logger)
	if err != nil {
		return err
	}
	usageHandler := usage.NewHandler(meter, usageSpecs{mgr, ctl}, prices).WithBudgets(budgets)
	gw.Register("GET /v1/usage", auth.RightInvoke, usageHandler)
	gw.Register("GET /v1/usage/requests", auth.RightInvoke, usage.NewRequestsHandler(meter))

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	// Async jobs (Replicate-compatible predictions) go through the same
	// activator as sync calls.
	jobStore := st.jobs
	allow, err := cfg.WebhookAllowPrefixes() // checked by Validate
	if err != nil {
		return err
	}
	whPolicy := webhook.Policy{AllowPrivate: cfg.WebhookAllowPrivate, Allow: allow}
	tokens, err := streamTokens(ctx, jobStore)
	if err != nil {
		return err
	}
	jobSvc := jobs.New(jobStore, &jobInvoker{act: act, px: px}, jobFunctions{mgr},
		jobs.Options{BaseURL: scheme + "://" + ln.Addr().String(),
			WebhookClient: whPolicy.Client(10 * time.Second), CheckWebhookAddr: whPolicy.Check,
			StreamToken: func(id string) string { return tokens.Sign(id, time.Now()) },
			WorkerID:    st.workerID, LeaseDuration: cfg.JobLease},
		logger.With("component", "jobs"))
	// A protocol cog function's input is checked against its schema
	// before a job is queued (422 naming the field).
	checkedJobs := replicate.ValidateInputs(jobSvc, drv.container)
	var predictionJobs replicate.Jobs = checkedJobs
	if cfg.Auth {
		predictionJobs = replicate.Authorize(checkedJobs)
	}
	predictions := replicate.New(predictionJobs, logger.With("component", "predictions"))
	if cfg.Auth {
		// Stream URLs carry a signed token for their one prediction, so
		// clients that fetch them without a key (Replicate's) can stream.
		predictions.SetStreamTokens(tokens)
	}
	predictions.Mount(gw)
	dashOpts := dashboard.Options{Functions: registryView{ctl}, Instances: instancesView{mgr}, Routes: routeSvc,
		Jobs: predictionJobs, Usage: usageHandler, Recorder: c.dashRec, Versions: db, Catalogue: prices,
		Prices: routeCosts, Logger: logger.With("component", "dashboard")}
	if authn != nil {
		dashOpts.Keys = authn
	}
	dash := dashboard.New(dashOpts)
	dash.Mount(gw)
	jobsCtx, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	jobsDone := make(chan error, 1)
	go func() { jobsDone <- jobSvc.Run(jobsCtx) }()
	srv := &http.Server{
		// The handler chain, outermost first: the authenticator
		// (identifies the key), per-key limits, then the gateway's
		// router, which checks each route's right before its handler
		// (function checks, per-function limits; an invocation's
		// Ember-Cost-USD header is the gateway's).
		Handler:           authenticate(limitKeys(gw)),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	logger.Info("ember serving", "role", r.String(), "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "store", st.kind, "database", st.where)
	if routes != nil {
		routes(gw.Routes())
	}
	if member != nil {
		// A gateway takes traffic once it has the leader's state: before,
		// it knows no instance and its limits are not split yet.
		gw.SetReady(false)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	var readyMu sync.Mutex // orders the join's ready against the drain's not-ready
	if member != nil {
		g.Go(func() error {
			select {
			case <-member.Joined():
				readyMu.Lock()
				defer readyMu.Unlock()
				if ctx.Err() == nil {
					gw.SetReady(true)
					logger.Info("joined the leader's state; ready")
				}
			case <-gctx.Done():
			}
			return nil
		})
	}
	// Stores that tell: writes by other handles on the store (functions,
	// routes, key revocations) apply here.
	changes, err := st.watch(gctx, changeHead, cfg.StorePoll, logger.With("component", "store"))
	if err != nil {
		return err
	}
	ctlDone := make(chan struct{})
	g.Go(func() error {
		defer close(ctlDone)
		if member != nil {
			// A gateway scales nothing: it reports to the leader.
			return member.Run(gctx)
		}
		return ctl.Run(gctx)
	})
	g.Go(func() error { return meter.Run(gctx) }) // metering (issue #6)
	g.Go(func() error { return dash.Run(gctx) })  // the dashboard's sampler
	fol := follower{functions: ctl.Sync, routes: routeSvc.Sync, logger: logger.With("component", "store")}
	if authn != nil {
		fol.keys = authn.Forget
	}
	followDone := make(chan struct{})
	g.Go(func() error {
		defer close(followDone)
		return fol.follow(gctx, changes)
	})
	g.Go(func() error {
		serve := func() error { return srv.Serve(ln) }
		if cfg.TLSCert != "" {
			serve = func() error { return srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey) }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})

	select {
	case <-ctx.Done():
	case <-gctx.Done(): // a component failed
	}
	logger.Info("draining", "grace", cfg.Grace)
	readyMu.Lock()
	gw.SetReady(false)
	readyMu.Unlock()
	if cfg.DrainDelay > 0 {
		time.Sleep(cfg.DrainDelay) // let load balancers see /readyz fail
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		logger.Warn("in-flight requests cut at the end of the grace period", "err", err)
		srv.Close()
	}
	// Jobs stop before instances: a running attempt is handed back (and
	// retried after a restart) rather than cut by its instance stopping.
	stopJobs()
	if err := <-jobsDone; err != nil {
		logger.Error("jobs", "err", err)
	}
	stopRun()
	<-ctlDone    // no scaling decision may start an instance behind Shutdown
	<-followDone // nor a function applied from the store
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelStop()
	mgr.Shutdown(stopCtx)
	drv.onnx.Close(stopCtx) // before the last metering flush, which then has the pool's seconds
	err = g.Wait()
	// metering (issue #6): the instances stopped above end their accounting now.
	if ferr := meter.Close(stopCtx); ferr != nil {
		logger.Error("metering: last flush", "err", ferr)
	}
	logger.Info("ember stopped")
	return err
}
