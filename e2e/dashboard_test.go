package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// browser starts Debian's chromium headless for one test, with a fresh
// profile, and collects console errors and uncaught exceptions (a CSP
// violation is one). It skips when chromium is absent.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := os.Getenv("EMBER_CHROMIUM")
	if path == "" {
		for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if lp, err := exec.LookPath(p); err == nil {
				path = lp
				break
			}
		}
	}
	if path == "" {
		t.Skip("no chromium: .ci/run installs it (apt-get install chromium); EMBER_CHROMIUM names another")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(cancelA)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var errs []string
	msgs := chromedp.Console(ctx) // every console call, exception and browser log entry (CSP violations are errors)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %s (%s)", m.Type, m.Text, m.URL))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancelC(); <-done })
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// text polls selector's text until ok accepts it, up to d (the page
// updates over SSE; this waits on an external process, with a deadline).
func waitText(t *testing.T, ctx context.Context, d time.Duration, what, sel string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := chromedp.Run(cctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil {
			last = s
			if ok(s) {
				return s
			}
		}
		time.Sleep(100 * time.Millisecond) // poll interval for the browser's DOM
	}
	t.Fatalf("%s: %s never matched within %s; last text %q", what, sel, d, last)
	return ""
}

// shoot saves a full-page screenshot at phone and desktop widths into
// docs/screenshots when EMBER_UPDATE_SCREENSHOTS=1, and checks at both
// widths that the page does not scroll sideways.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	for _, w := range []struct {
		label         string
		width, height int64
		mobile        bool
	}{{"phone", 390, 844, true}, {"desktop", 1280, 900, false}} {
		err := chromedp.Do(ctx, emulate(w.width, w.height, w.mobile))
		overflow, err2 := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
		png, err3 := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err = errors.Join(err, err2, err3); err != nil {
			t.Fatalf("%s at %s: %v", name, w.label, err)
		}
		if overflow {
			t.Errorf("%s scrolls sideways at %s width (%dpx)", name, w.label, w.width)
		}
		if os.Getenv("EMBER_UPDATE_SCREENSHOTS") == "1" {
			dir := filepath.Join("..", "docs", "screenshots")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+w.label+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardInABrowser drives /ui in headless chromium against the
// real server: sign in with the admin key, watch a function go from zero
// to ready and back to zero on its page, watch a job's output stream in,
// change the cost model's input, with no console error on any page, at
// phone and desktop widths.
func TestDashboardInABrowser(t *testing.T) {
	ctx, consoleErrors := browser(t)
	// The job below announces its completion to this receiver (loopback,
	// allowed with --webhook-allow).
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	t.Cleanup(hook.Close)
	s := startServer(t, "", "--webhook-allow", "127.0.0.1/32")
	// Deployed twice: the function's page lists both versions.
	s.deploy(simSpec("web", "{min: 0, max: 2, concurrency: 4, idle_timeout: 3s}", "env: {SIM_LOAD_DELAY: 300ms}"))
	s.deploy(simSpec("web", "{min: 0, max: 2, concurrency: 4, idle_timeout: 3s}", "env: {SIM_LOAD_DELAY: 300ms, DEPLOYED: second}"))
	vs, err := s.c.Versions(context.Background(), "web")
	must(t, err)
	if len(vs) != 2 || vs[0].Version != 2 || !strings.Contains(string(vs[0].Spec), "second") || vs[1].Version != 1 || vs[0].DeployedBy == "" {
		t.Errorf("GET /v1/functions/web/versions = %+v", vs)
	}
	out, err := exec.Command(bins.ember, "--server", s.url, "--key-file", s.dataDir+"/admin.key", "versions", "web").CombinedOutput()
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || len(lines) != 3 ||
		!strings.HasPrefix(lines[1], "2 ") || !strings.HasPrefix(lines[2], "1 ") || !strings.Contains(lines[1], vs[0].DeployedBy) {
		t.Errorf("ember versions web: %v\n%s", err, out)
	}
	s.deploy(simSpec("streamjob", "{min: 0, max: 1, idle_timeout: 30s}", "predict_path: /stream", "env: {SIM_STREAM_N: '6', SIM_STREAM_INTERVAL_MS: '700'}"))
	// A route from web to streamjob whose low threshold the calls below
	// cross: the routes page shows the QPS against it and the switch.
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: chat
targets:
  persistent: {function: streamjob}
  serverless: {function: web}
policy: {threshold: 0.2, window: 10s, hold: 1ms}
`)); err != nil {
		t.Fatal(err)
	}
	// A cost-policy route between two priced URL pools (never called):
	// the routes page draws both targets' prices per hour over time.
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: pricey
targets:
  persistent: {url: "http://127.0.0.1:9", usd_per_hour: 1.25}
  serverless: {url: "http://127.0.0.2:9", usd_per_request: 0.001}
policy: {type: cost}
`)); err != nil {
		t.Fatal(err)
	}

	// Sign in: the key goes in a form field, never the URL.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(s.url+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=key]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=key]`), s.key),
		chromedp.Submit(chromedp.CSS(`form.signin`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/functions/web"]`))))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err)
	if strings.Contains(loc, s.key) || !strings.HasSuffix(loc, "/ui/") {
		t.Errorf("after sign-in the URL is %q", loc)
	}
	shoot(t, ctx, "functions")

	// Cold → warm → back to zero, seen live on the function's page.
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/functions/web")))
	waitText(t, ctx, 10*time.Second, "web at zero", "#fn-state", func(s string) bool { return s == api.FunctionScaledToZero })
	go func() {
		for range 5 {
			s.callAs(s.key, "POST", "/v1/run/web/predict", `{"sleep_ms": 200}`)
			s.callAs(s.key, "POST", "/v1/run/chat/predict", `{"sleep_ms": 200}`)
		}
	}()
	waitText(t, ctx, 20*time.Second, "web ready", "#fn-state", func(s string) bool { return s == api.FunctionReady })
	waitText(t, ctx, 20*time.Second, "a cold start's waterfall", "[data-live=starts]", func(s string) bool { return strings.Contains(s, "total") })
	waitText(t, ctx, 30*time.Second, "web back at zero", "#fn-state", func(s string) bool { return s == api.FunctionScaledToZero })
	busyRects, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("[data-live=timeline] rect.st-starting").length`))
	must(t, err)
	if busyRects == 0 {
		t.Error("the instance timeline shows no starting segment")
	}
	versions, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("table.versions tr.version td:first-child")).map(td => td.textContent)`))
	must(t, err)
	if strings.Join(versions, ",") != "v2,v1" {
		t.Errorf("deploy history shows %q, want v2,v1", versions)
	}
	shoot(t, ctx, "function")

	// A job's output streams in while it runs.
	p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "streamjob", Input: json.RawMessage(`{"prompt": "hello"}`),
		Webhook: hook.URL, WebhookEventsFilter: []string{api.WebhookCompleted}}, client.PredictionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/jobs/"+p.ID)))
	waitText(t, ctx, 30*time.Second, "partial output while the job runs", "[data-live=job]", func(s string) bool {
		return (strings.Contains(s, `"i":1`) || strings.Contains(s, `"i": 1`)) && !strings.Contains(s, "succeeded")
	})
	waitText(t, ctx, 30*time.Second, "the job done", "#job-status", func(s string) bool { return s == api.PredictionSucceeded })
	// The completed webhook is sent after the job ends: once delivered,
	// the API and a reloaded page show the delivery.
	eventually(t, 30*time.Second, "the delivery recorded", func() bool {
		got, err := s.c.Prediction(context.Background(), p.ID, 0)
		return err == nil && len(got.WebhookDeliveries) == 1 && got.WebhookDeliveries[0].Outcome == api.DeliveryDelivered &&
			got.WebhookDeliveries[0].StatusCode == http.StatusOK && got.WebhookDeliveries[0].Attempts == 1
	})
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/jobs/"+p.ID)))
	waitText(t, ctx, 10*time.Second, "the delivered webhook", "table.deliveries", func(s string) bool {
		return strings.Contains(s, "completed") && strings.Contains(s, "delivered") && strings.Contains(s, "HTTP 200")
	})
	shoot(t, ctx, "job")
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/jobs"), chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/jobs/`+p.ID+`"]`))))
	shoot(t, ctx, "jobs")

	// The cost model recomputes on the server when an input changes.
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/cost")))
	before, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#model-table`)))
	must(t, err)
	must(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#rpd`), "500000"),
		chromedp.Click(chromedp.CSS(`#recompute`))))
	after := waitText(t, ctx, 10*time.Second, "the recomputed table", "#model-table", func(s string) bool { return strings.Contains(s, "500k") })
	if before == after {
		t.Error("the cost table did not change with requests/day")
	}
	shoot(t, ctx, "cost")
	must(t, chromedp.Do(ctx, chromedp.Navigate(s.url+"/ui/routes")))
	waitText(t, ctx, 10*time.Second, "the route's switch to persistent", "[data-live=routes]", func(s string) bool {
		return strings.Contains(s, "serverless → persistent")
	})
	waitText(t, ctx, 10*time.Second, "the cost route's prices", "[data-live=routes]", func(s string) bool {
		return strings.Contains(s, "persistent $1.25/h · serverless $0.00/h") && strings.Contains(s, "price per hour of each target")
	})
	shoot(t, ctx, "routes")

	// An invoke key for web only: its dashboard lists web, not streamjob,
	// and not the admin's job (checked over plain HTTP with its own session).
	invoke := s.createKey(api.KeyCreate{Name: "viewer", Scope: api.ScopeInvoke, Functions: []string{"web"}})
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.PostForm(s.url+"/ui/signin", url.Values{"key": {invoke}})
	must(t, err)
	resp.Body.Close()
	for path, want := range map[string][2]string{"/ui/": {"/ui/functions/web", "streamjob"}, "/ui/jobs": {"No jobs match", p.ID}} {
		resp, err := hc.Get(s.url + path)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want[0]) || strings.Contains(string(body), want[1]) {
			t.Errorf("invoke key's %s: want %q and not %q:\n%s", path, want[0], want[1], body)
		}
	}

	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	// The session cookie is HttpOnly: the page's script cannot read it.
	cookie, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	must(t, err)
	if cookie != "" {
		t.Errorf("document.cookie = %q, want the session hidden from scripts", cookie)
	}
}

func emulate(w, h int64, mobile bool) chromedp.Action[chromedp.Void] {
	if mobile {
		return chromedp.EmulateViewport(w, h, chromedp.EmulateMobile)
	}
	return chromedp.EmulateViewport(w, h)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
