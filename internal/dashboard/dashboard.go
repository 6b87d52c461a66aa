package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/route"
)

//go:embed assets
var assets embed.FS

// Functions lists deployed functions (the controller, through app's view).
type Functions interface {
	List() []api.Function
	Get(name string) (api.Function, bool)
}

// Instances reads the live pools (the instance manager).
type Instances interface {
	Instances(fn string) ([]api.Instance, bool)
	Status(fn string, now time.Time) (api.FunctionStatus, bool)
	Logs(fn string, tail int) ([]api.LogLine, error)
}

// Routes lists hybrid routes with their live choice.
type Routes interface {
	List() []api.Route
}

// Jobs reads predictions; the caller's principal in ctx limits an invoke
// key to its own (replicate.Authorize).
type Jobs interface {
	Get(ctx context.Context, id string) (*api.Prediction, error)
	List(ctx context.Context, o jobs.ListOptions) (*jobs.Page, error)
	Subscribe(ctx context.Context, id string, lastEventID int64) (*jobs.Stream, error)
}

// Versions reads a function's deploy history, newest first (the store).
type Versions interface {
	FunctionVersions(ctx context.Context, name string, limit int) ([]api.FunctionVersion, error)
}

// Usage reports metered usage as GET /v1/usage would answer r.
type Usage interface {
	Report(r *http.Request) (*api.UsageReport, error)
}

// Keys checks an API key as the Authorization header would carry it.
type Keys interface {
	Authenticate(ctx context.Context, header string) (*auth.Principal, error)
}

// Registrar is the gateway's router: every route goes in with its right.
type Registrar interface {
	Register(pattern string, right auth.Right, h http.Handler)
}

// Options build a Dashboard. Functions, Instances and Recorder are
// required; a nil Routes, Jobs or Usage leaves its page empty; a nil Keys
// means the server runs without authentication (everyone is admin).
type Options struct {
	Functions Functions
	Instances Instances
	Routes    Routes
	Jobs      Jobs
	Usage     Usage
	Keys      Keys
	// Versions shows the stored deploy history on a function's page (nil:
	// the versions seen since the server started).
	Versions  Versions
	Recorder  *Recorder
	Catalogue *cost.Catalogue
	// Prices prices a cost-policy route's targets, with the same inputs
	// the router's decision uses (routing.Costs); nil draws no prices.
	Prices route.CostComparer
	// MaxStreams bounds the SSE streams open at once (default 64).
	MaxStreams int
	// Every is the sampling interval (default 1s).
	Every  time.Duration
	Logger *slog.Logger
}

// Dashboard serves /ui.
type Dashboard struct {
	opts     Options
	rec      *Recorder
	sessions *sessions
	streams  chan struct{} // a slot per open SSE stream
	frames   frames        // function pages' fragments, shared per sample
	now      func() time.Time
	log      *slog.Logger
}

// New builds the dashboard.
func New(opts Options) *Dashboard {
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 64
	}
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Dashboard{opts: opts, rec: opts.Recorder, sessions: newSessions(),
		streams: make(chan struct{}, opts.MaxStreams), now: time.Now, log: opts.Logger}
}

// Mount registers every /ui route with its right. Pages, the event
// stream and sign-out need a session (RightSession: the handler checks
// the cookie and re-checks its key); the sign-in form and the static
// assets are public.
func (d *Dashboard) Mount(r Registrar) {
	static, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/ui/assets/", http.FileServerFS(static))
	r.Register("GET /ui/assets/", auth.RightPublic, d.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})))
	r.Register("GET /ui", auth.RightPublic, d.headers(http.RedirectHandler("/ui/", http.StatusSeeOther)))
	r.Register("GET /ui/signin", auth.RightPublic, d.headers(http.HandlerFunc(d.signinForm)))
	r.Register("POST /ui/signin", auth.RightPublic, d.headers(http.HandlerFunc(d.signin)))
	r.Register("POST /ui/signout", auth.RightSession, d.headers(d.session(d.signout)))
	r.Register("GET /ui/{$}", auth.RightSession, d.headers(d.session(d.functionsPage)))
	r.Register("GET /ui/functions/{name}", auth.RightSession, d.headers(d.session(d.functionPage)))
	r.Register("GET /ui/jobs", auth.RightSession, d.headers(d.session(d.jobsPage)))
	r.Register("GET /ui/jobs/{id}", auth.RightSession, d.headers(d.session(d.jobPage)))
	r.Register("GET /ui/routes", auth.RightSession, d.headers(d.session(d.routesPage)))
	r.Register("GET /ui/cost", auth.RightSession, d.headers(d.session(d.costPage)))
	r.Register("GET /ui/events", auth.RightSession, d.headers(d.session(d.events)))
}

// headers sets the security headers every /ui answer carries: no inline
// script or style, no framing, no sniffing, no referrer off the site.
func (d *Dashboard) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if r.Method == http.MethodPost && !sameOrigin(r) {
			http.Error(w, "cross-origin form refused: Origin does not match Host", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin: a browser sends Origin on every POST; when it does, it must
// name this host (a second line behind SameSite=Strict and the CSRF token).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// viewer is who is looking: the principal (nil with auth off: admin) and
// the session (nil with auth off).
type viewer struct {
	p  *auth.Principal
	ss *session
}

func (v viewer) admin() bool { return v.p == nil || v.p.Has(auth.ScopeAdmin) }

func (v viewer) may(fn string) bool { return v.p == nil || v.p.MayInvoke(fn) }

func (v viewer) csrf() string {
	if v.ss == nil {
		return ""
	}
	return v.ss.csrf
}

// ctx carries the principal, so Jobs and Usage apply the key's limits.
func (v viewer) ctx(ctx context.Context) context.Context {
	if v.p == nil {
		return ctx
	}
	return auth.NewContext(ctx, v.p)
}

// session resolves the cookie to a live session whose key still holds
// (not revoked, not expired: checked on every request), or sends the
// browser to sign in.
func (d *Dashboard) session(h func(w http.ResponseWriter, r *http.Request, v viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.opts.Keys == nil {
			h(w, r, viewer{})
			return
		}
		c, err := r.Cookie(cookieName)
		var ss *session
		if err == nil {
			ss = d.sessions.get(c.Value, d.now())
		}
		if ss == nil {
			d.toSignin(w, r, "")
			return
		}
		p, err := d.opts.Keys.Authenticate(r.Context(), "Bearer "+ss.key)
		if err != nil {
			d.sessions.close(ss.id)
			clearCookie(w, r)
			msg := "signed out: the key no longer works"
			var ae *auth.Error
			if errors.As(err, &ae) {
				msg = "signed out: " + ae.Message
			}
			d.toSignin(w, r, msg)
			return
		}
		if r.Method == http.MethodPost && !ss.validCSRF(r.PostFormValue("csrf")) {
			http.Error(w, "invalid or missing csrf token: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r, viewer{p: p, ss: ss})
	})
}

func (d *Dashboard) toSignin(w http.ResponseWriter, r *http.Request, msg string) {
	if r.URL.Path == "/ui/events" {
		http.Error(w, "not signed in", http.StatusUnauthorized) // EventSource cannot follow to a form
		return
	}
	target := "/ui/signin"
	if msg != "" {
		target += "?m=" + url.QueryEscape(msg)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/ui", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, r *http.Request) { setCookie(w, r, "", -1) }

// maxKeyBytes bounds the sign-in form's key field.
const maxKeyBytes = 256

func (d *Dashboard) signin(w http.ResponseWriter, r *http.Request) {
	if d.opts.Keys == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	key := r.PostFormValue("key")
	if key == "" || len(key) > maxKeyBytes {
		d.toSignin(w, r, "key: paste an API key (at most 256 bytes)")
		return
	}
	p, err := d.opts.Keys.Authenticate(r.Context(), "Bearer "+key)
	if err != nil {
		msg := "key: not accepted"
		var ae *auth.Error
		if errors.As(err, &ae) {
			msg = "key: " + ae.Message
		}
		d.toSignin(w, r, msg)
		return
	}
	ss := d.sessions.open(key, p.Name, d.now())
	setCookie(w, r, ss.id, int(sessionTTL.Seconds()))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (d *Dashboard) signout(w http.ResponseWriter, r *http.Request, v viewer) {
	if v.ss != nil {
		d.sessions.close(v.ss.id)
	}
	clearCookie(w, r)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

// Run samples every function and route once per Every until ctx ends.
func (d *Dashboard) Run(ctx context.Context) error {
	t := time.NewTicker(d.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			d.sample(now)
		}
	}
}

func (d *Dashboard) sample(now time.Time) {
	var obs []observed
	for _, f := range d.opts.Functions.List() {
		o := observed{Function: f}
		if st, ok := d.opts.Instances.Status(f.Name, now); ok {
			o.Status = st
		}
		if full, ok := d.opts.Functions.Get(f.Name); ok {
			o.Status.Desired, o.Status.Reason = full.Status.Desired, full.Status.Reason
		}
		o.Instances, _ = d.opts.Instances.Instances(f.Name)
		obs = append(obs, o)
	}
	var routes []observedRoute
	if d.opts.Routes != nil {
		for _, rt := range d.opts.Routes.List() {
			routes = append(routes, d.priced(rt))
		}
	}
	d.rec.Sample(now, obs, routes)
}

// priced adds a cost-policy route's targets' prices per hour at its
// measured QPS, as the router's cost decision computes them.
func (d *Dashboard) priced(rt api.Route) observedRoute {
	o := observedRoute{Route: rt}
	if d.opts.Prices == nil || rt.Status == nil {
		return o
	}
	var r route.Route
	if json.Unmarshal(rt.Spec, &r) != nil {
		return o
	}
	r.Name = rt.Name
	r.Default()
	if r.Policy.Type != route.PolicyCost {
		return o
	}
	p, s, err := d.opts.Prices.HourlyCosts(&r, rt.Status.QPS)
	if err != nil {
		return o // nothing to price with yet (no measured request): a gap in the chart
	}
	o.Priced, o.Persistent, o.Serverless = true, p, s
	return o
}
