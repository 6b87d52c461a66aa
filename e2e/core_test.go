package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

type predictOut struct {
	Output   json.RawMessage `json:"output"`
	Instance string          `json:"instance"`
	InFlight int             `json:"in_flight"`
}

func TestScaleFromZeroAndBack(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("sim", "{min: 0, max: 2, concurrency: 4, idle_timeout: 2s}"))
	if n := len(s.instances("sim")); n != 0 {
		t.Fatalf("instances after deploy = %d, want 0 (min 0)", n)
	}

	first := s.call("POST", "/v1/run/sim/predict", `{"echo": "one"}`)
	if first.status != 200 {
		t.Fatalf("first call: %d %s", first.status, first.body)
	}
	if got := first.header.Get(api.HeaderColdStart); got != "true" {
		t.Errorf("first call Ember-Cold-Start = %q, want true", got)
	}
	var out predictOut
	decode(t, first.body, &out)
	if string(out.Output) != `"one"` || out.Instance != first.header.Get(api.HeaderInstance) {
		t.Errorf("first call body %s, instance header %q", first.body, first.header.Get(api.HeaderInstance))
	}
	st := first.header.Get(api.HeaderServerTiming)
	for _, ph := range []string{"queue;dur=", "spawned;dur=", "listening;dur=", "ready;dur="} {
		if !strings.Contains(st, ph) {
			t.Errorf("Server-Timing %q lacks %q", st, ph)
		}
	}
	if q, err := strconv.ParseFloat(first.header.Get(api.HeaderQueueMs), 64); err != nil || q <= 0 {
		t.Errorf("cold Ember-Queue-Ms = %q, want > 0", first.header.Get(api.HeaderQueueMs))
	}

	second := s.call("POST", "/v1/run/sim/predict", `{"echo": "two"}`)
	if second.status != 200 || second.header.Get(api.HeaderColdStart) != "" {
		t.Fatalf("second call: %d cold=%q, want 200 warm", second.status, second.header.Get(api.HeaderColdStart))
	}
	if second.header.Get(api.HeaderInstance) != first.header.Get(api.HeaderInstance) {
		t.Errorf("warm call went to %s, want the warm instance %s", second.header.Get(api.HeaderInstance), first.header.Get(api.HeaderInstance))
	}

	ins := s.instances("sim")
	if len(ins) != 1 || ins[0].State != api.StateReady || ins[0].ReadyAt == nil || ins[0].ExpiresAt == nil {
		t.Fatalf("instances = %+v, want one ready with ready_at and expires_at", ins)
	}
	for _, ph := range []string{"spawned", "listening", "ready"} {
		if _, ok := ins[0].Phases[ph]; !ok {
			t.Errorf("instance phases %v lack %q", ins[0].Phases, ph)
		}
	}

	// Keep-warm ends after idle_timeout and the function returns to zero.
	idleFrom := time.Now()
	eventually(t, 10*time.Second, "scale to zero", func() bool { return len(s.instances("sim")) == 0 })
	if waited := time.Since(idleFrom); waited < 1500*time.Millisecond {
		t.Errorf("scaled to zero after %s, before the 2s idle timeout", waited)
	}

	// A restart keeps the function; its next call is cold again.
	dataDir := s.dataDir
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	s2 := startServer(t, dataDir)
	fns, err := s2.c.Functions(context.Background())
	if err != nil || len(fns) != 1 || fns[0].Name != "sim" {
		t.Fatalf("functions after restart = %v, %v; want [sim]", fns, err)
	}
	again := s2.call("POST", "/v1/run/sim/predict", `{"echo": "three"}`)
	if again.status != 200 || again.header.Get(api.HeaderColdStart) != "true" {
		t.Errorf("after restart: %d cold=%q, want 200 cold", again.status, again.header.Get(api.HeaderColdStart))
	}
}

func TestBurstRespectsMaxAndConcurrency(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("burst", "{min: 0, max: 8, concurrency: 4, idle_timeout: 60s}"))
	const n = 100
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.call("POST", "/v1/run/burst/predict", `{"sleep_ms": 50}`)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	maxInFlight := 0
	for i, r := range results {
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		var out predictOut
		decode(t, r.body, &out)
		seen[out.Instance] = true
		maxInFlight = max(maxInFlight, out.InFlight)
	}
	if len(seen) > 8 {
		t.Errorf("requests served by %d instances, want ≤ 8", len(seen))
	}
	if maxInFlight > 4 {
		t.Errorf("an instance reported %d requests in flight, want ≤ 4", maxInFlight)
	}
	// Each instance's own count of its peak concurrency.
	for _, in := range s.instances("burst") {
		resp, err := http.Get("http://" + in.Addr + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Max int `json:"max_in_flight"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Max > 4 {
			t.Errorf("instance %s saw %d in flight, want ≤ 4", in.ID, st.Max)
		}
	}
	if n := len(s.instances("burst")); n > 8 {
		t.Errorf("%d instances, want ≤ 8", n)
	}
	t.Logf("100 requests served by %d instances, peak per-instance concurrency %d", len(seen), maxInFlight)
}

func TestCrashMidRequestGives502AndRecovers(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("crashy", "{min: 0, max: 2, concurrency: 4}"))
	warm := s.call("POST", "/v1/run/crashy/predict", `{}`)
	if warm.status != 200 {
		t.Fatalf("warm-up: %d %s", warm.status, warm.body)
	}
	r := s.call("POST", "/v1/run/crashy/predict", `{"crash": true}`)
	if r.status != http.StatusBadGateway {
		t.Fatalf("crash: status %d %s, want 502", r.status, r.body)
	}
	if r.elapsed > time.Second {
		t.Errorf("502 after %s, want within 1s", r.elapsed)
	}
	var e api.Error
	decode(t, r.body, &e)
	if !strings.Contains(e.Error.Message, "exited mid-request") || !strings.Contains(e.Error.Message, "status 2") {
		t.Errorf("502 message %q, want it to say the instance exited mid-request with status 2", e.Error.Message)
	}
	next := s.call("POST", "/v1/run/crashy/predict", `{"echo": 1}`)
	if next.status != 200 {
		t.Fatalf("after crash: %d %s", next.status, next.body)
	}
	if next.header.Get(api.HeaderInstance) == warm.header.Get(api.HeaderInstance) {
		t.Error("request after crash went to the dead instance")
	}
	// The failure stays visible with its exit status and last log lines.
	var failed *api.Instance
	for _, in := range s.instances("crashy") {
		if in.State == api.StateFailed {
			failed = &in
		}
	}
	if failed == nil || !strings.Contains(failed.ExitError, "status 2") || len(failed.LastLogs) == 0 {
		t.Errorf("failed instance = %+v, want exit status 2 and last logs", failed)
	}
}

// Killing the server with SIGKILL leaves nothing behind: not its
// instances (Pdeathsig), not what they started themselves (the guard kills
// their process groups), not the guard.
func TestServerSIGKILLLeavesNoInstance(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("orphan", "{min: 2, max: 2}"))
	// A shell that stays the sim's parent: the sim is the server's
	// grandchild, out of reach of the shell's parent-death signal.
	s.deploy(fmt.Sprintf("name: wrapped\ncommand: [\"/bin/sh\", \"-c\", \"%s; true\"]\nscaling: {min: 1, max: 1}\n", bins.sim))
	eventually(t, 10*time.Second, "three ready instances", func() bool {
		ready := 0
		for _, fn := range []string{"orphan", "wrapped"} {
			for _, in := range s.instances(fn) {
				if in.State == api.StateReady {
					ready++
				}
			}
		}
		return ready == 3
	})
	all := descendants(s.cmd.Process.Pid)
	var sims, guards int
	for _, pid := range all {
		switch comm(pid) {
		case "sim":
			sims++
		case "ember":
			guards++
		}
	}
	if sims != 3 || guards != 1 {
		t.Fatalf("server's descendants: %d sim, %d ember (guard); want 3 and 1 (%d processes in all)", sims, guards, len(all))
	}
	s.cmd.Process.Kill()
	<-s.done
	eventually(t, 5*time.Second, "instances, their children and the guard to die with the server", func() bool {
		for _, pid := range all {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

func TestSIGTERMDrainsInFlight(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("slow", "{min: 1, max: 1}"))
	eventually(t, 10*time.Second, "ready instance", func() bool {
		ins := s.instances("slow")
		return len(ins) == 1 && ins[0].State == api.StateReady
	})
	kids := children(s.cmd.Process.Pid)
	done := make(chan result)
	go func() { done <- s.call("POST", "/v1/run/slow/predict", `{"sleep_ms": 1000, "echo": "finished"}`) }()
	eventually(t, 5*time.Second, "request in flight", func() bool {
		ins := s.instances("slow")
		return len(ins) == 1 && ins[0].InFlight == 1
	})
	s.cmd.Process.Signal(syscall.SIGTERM)
	r := <-done
	if r.status != 200 || !strings.Contains(string(r.body), "finished") {
		t.Errorf("in-flight request during drain: %d %s, want 200", r.status, r.body)
	}
	<-s.done
	if s.exitErr != nil {
		t.Errorf("server exit: %v, want status 0", s.exitErr)
	}
	for _, pid := range kids {
		if alive(pid) {
			t.Errorf("instance pid %d outlived the drained server", pid)
		}
	}
}

func TestStartFailureReportsReason(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("broken", "{min: 0, max: 1}", "env: {SIM_FAIL_START: \"weights file missing\"}"))
	r := s.call("POST", "/v1/run/broken/predict", `{}`)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	var e api.Error
	decode(t, r.body, &e)
	if e.Error.Code != "start_failed" || !strings.Contains(e.Error.Message, "status 1") || !strings.Contains(e.Error.Message, "weights file missing") {
		t.Errorf("error = %+v, want start_failed naming exit status 1 and the last log line", e.Error)
	}
}

func TestBadInputErrors(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("small", "{min: 0, max: 1, queue: 1}", "max_body_bytes: 1024", "timeout: 1s"))
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"unknown function", "POST", "/v1/run/nope/predict", `{}`, 404, `unknown function \"nope\"`},
		{"invalid spec", "POST", "/v1/functions", "name: x\nscaling: {min: 3, max: 1}\ncommand: [a]", 400, "scaling.max: must be ≥ scaling.min (got 1 < 3)"},
		{"malformed spec", "POST", "/v1/functions", "{name: x", 400, "spec:"},
		{"unknown field", "POST", "/v1/functions", "name: x\ncommand: [a]\nscalling: {}", 400, `unknown field \"scalling\"`},
		{"empty spec", "POST", "/v1/functions", "", 400, "empty spec"},
		{"oversized body", "POST", "/v1/run/small/predict", strings.Repeat("x", 2048), 413, "limit is 1024 bytes"},
		{"timeout", "POST", "/v1/run/small/predict", `{"sleep_ms": 3000}`, 504, "request timed out"},
		// The instance is up now: a free slot, and the deadline on the
		// forwarder's connection rather than on a context.
		{"timeout, warm", "POST", "/v1/run/small/predict", `{"sleep_ms": 3000}`, 504, "request timed out"},
		{"no route", "GET", "/v2/nothing", "", 404, "no route for GET /v2/nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.call(tt.method, tt.path, tt.body)
			if r.status != tt.status || !strings.Contains(string(r.body), tt.want) {
				t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("narrow", "{min: 1, max: 1, concurrency: 1, queue: 1}"))
	eventually(t, 10*time.Second, "ready", func() bool { ins := s.instances("narrow"); return len(ins) == 1 && ins[0].State == api.StateReady })
	var wg sync.WaitGroup
	for range 2 { // one in flight, one queued
		wg.Add(1)
		go func() { defer wg.Done(); s.call("POST", "/v1/run/narrow/predict", `{"sleep_ms": 1500}`) }()
	}
	eventually(t, 5*time.Second, "one in flight and one queued", func() bool {
		f, err := s.c.Function(context.Background(), "narrow")
		return err == nil && f.Status.InFlight == 1 && len(s.instances("narrow")) == 1 && queued(s, "narrow") == 1
	})
	r := s.call("POST", "/v1/run/narrow/predict", `{}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "queue full") {
		t.Errorf("third request = %d %s (Retry-After %q), want 503 queue full with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	wg.Wait()
}

// queued reads the queue depth from the metrics-independent status.
func queued(s *server, name string) int {
	f, err := s.c.Function(context.Background(), name)
	if err != nil {
		return -1
	}
	return f.Status.Queued
}

func TestStreamingArrivesEventByEvent(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("streamer", "{min: 1, max: 1}"))
	resp, err := s.get("/v1/run/streamer/stream?n=5&interval_ms=200")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var firstAt time.Time
	var lastProduced int64
	n := 0
	for ev := range sseLines(resp.Body) {
		data := ev[0].(string)
		if data == "[DONE]" {
			break
		}
		var e struct{ I, T int64 }
		decode(t, []byte(data), &e)
		if n == 0 {
			firstAt = ev[1].(time.Time)
		}
		lastProduced = e.T
		n++
	}
	if n != 5 {
		t.Fatalf("got %d events, want 5", n)
	}
	if !firstAt.Before(time.Unix(0, lastProduced)) {
		t.Errorf("first event arrived at %v, after the last was produced at %v: the stream was buffered", firstAt, time.Unix(0, lastProduced))
	}
}

func TestUpdateDoesNotFailInFlight(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("rolling", "{min: 1, max: 2}"))
	eventually(t, 10*time.Second, "ready", func() bool { ins := s.instances("rolling"); return len(ins) == 1 && ins[0].State == api.StateReady })
	old := s.instances("rolling")[0].ID
	done := make(chan result)
	go func() { done <- s.call("POST", "/v1/run/rolling/predict", `{"sleep_ms": 800, "echo": "old"}`) }()
	eventually(t, 5*time.Second, "in flight", func() bool { return s.instances("rolling")[0].InFlight == 1 })
	f := s.deploy(simSpec("rolling", "{min: 1, max: 2}", "env: {VERSION: \"2\"}"))
	if f.Version != 2 {
		t.Errorf("version = %d, want 2", f.Version)
	}
	r := <-done
	if r.status != 200 || r.header.Get(api.HeaderInstance) != old {
		t.Errorf("in-flight request across update: %d from %s, want 200 from %s", r.status, r.header.Get(api.HeaderInstance), old)
	}
	eventually(t, 10*time.Second, "a version-2 instance ready", func() bool {
		for _, in := range s.instances("rolling") {
			if in.Version == 2 && in.State == api.StateReady {
				return true
			}
		}
		return false
	})
	next := s.call("POST", "/v1/run/rolling/predict", `{}`)
	if next.status != 200 || next.header.Get(api.HeaderInstance) == old {
		t.Errorf("request after update: %d from %s, want a new-version instance", next.status, next.header.Get(api.HeaderInstance))
	}
	eventually(t, 10*time.Second, "old instance stopped", func() bool {
		for _, in := range s.instances("rolling") {
			if in.ID == old {
				return false
			}
		}
		return true
	})
}

// An update whose new version cannot start leaves the old version serving
// and says why; the next good update replaces it.
func TestBadUpdateKeepsServing(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("steady", "{min: 1, max: 1}"))
	eventually(t, 10*time.Second, "ready", func() bool { ins := s.instances("steady"); return len(ins) == 1 && ins[0].State == api.StateReady })
	old := s.instances("steady")[0].ID

	bad := "name: steady\ncommand: [\"/bin/sh\", \"-c\", \"echo model file missing >&2; exit 3\"]\nscaling: {min: 1, max: 1}\n"
	s.deploy(bad)
	eventually(t, 10*time.Second, "the new version's start failed", func() bool {
		f, err := s.c.Function(context.Background(), "steady")
		return err == nil && strings.Contains(f.Status.LastError, "status 3")
	})
	for range 3 {
		r := s.call("POST", "/v1/run/steady/predict", `{}`)
		if r.status != 200 || r.header.Get(api.HeaderInstance) != old {
			t.Fatalf("call after a bad update: %d from %s (%s), want 200 from the old instance %s", r.status, r.header.Get(api.HeaderInstance), r.body, old)
		}
	}
	var logs []string
	for _, in := range s.instances("steady") {
		if in.State == api.StateFailed {
			logs = append(logs, in.LastLogs...)
		}
	}
	if !strings.Contains(strings.Join(logs, "\n"), "model file missing") {
		t.Errorf("failed new-version instance logs = %q, want its stderr", logs)
	}

	s.deploy(simSpec("steady", "{min: 1, max: 1}", "env: {VERSION: \"3\"}"))
	eventually(t, 10*time.Second, "old instance replaced", func() bool {
		ins := s.instances("steady")
		return len(ins) > 0 && ins[0].ID != old && ins[0].Version == 3 && ins[0].State == api.StateReady &&
			!slices.ContainsFunc(ins, func(in api.Instance) bool { return in.ID == old })
	})
}

// Removing a function lets a request in flight finish, and answers the
// next call 404 at once.
func TestRemoveFinishesInFlight(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("leaving", "{min: 1, max: 1}"))
	eventually(t, 10*time.Second, "ready", func() bool { ins := s.instances("leaving"); return len(ins) == 1 && ins[0].State == api.StateReady })
	done := make(chan result)
	go func() { done <- s.call("POST", "/v1/run/leaving/predict", `{"sleep_ms": 500, "echo": "last"}`) }()
	eventually(t, 5*time.Second, "in flight", func() bool { return s.instances("leaving")[0].InFlight == 1 })
	if err := s.c.Delete(context.Background(), "leaving"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	r := <-done
	if r.status != 200 || !strings.Contains(string(r.body), "last") {
		t.Errorf("request in flight across removal: %d %s, want 200 with its answer", r.status, r.body)
	}
	if r := s.call("POST", "/v1/run/leaving/predict", `{}`); r.status != 404 {
		t.Errorf("call after removal: %d %s, want 404", r.status, r.body)
	}
}

func TestCLI(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	specFile := dir + "/sim.yaml"
	writeFile(t, specFile, simSpec("clisim", "{min: 0, max: 1, idle_timeout: 30s}"))
	ember := func(args ...string) (string, string, error) {
		cmd := exec.Command(bins.ember, append([]string{"--server", s.url, "--key-file", s.dataDir + "/admin.key"}, args...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	if out, errs, err := ember("deploy", specFile); err != nil || !strings.Contains(out, "function clisim created (version 1)") {
		t.Fatalf("deploy: %v %q %q", err, out, errs)
	}
	out, errs, err := ember("run", "clisim", "--path", "/predict", "--data", `{"echo": "from cli"}`, "-v")
	if err != nil || !strings.Contains(out, `"from cli"`) || !strings.Contains(errs, "Ember-Cold-Start: true") {
		t.Fatalf("run: %v out=%q err=%q", err, out, errs)
	}
	if out, _, err := ember("ls"); err != nil || !strings.Contains(out, "clisim") || !strings.Contains(out, "READY") {
		t.Errorf("ls: %v %q", err, out)
	}
	out, _, err = ember("ls", "--json")
	var fns []api.Function
	if err != nil || json.Unmarshal([]byte(out), &fns) != nil || len(fns) != 1 || fns[0].Status.Ready != 1 {
		t.Errorf("ls --json: %v %q", err, out)
	}
	if out, _, err := ember("describe", "clisim"); err != nil || !strings.Contains(out, "COLD START PHASES") || !strings.Contains(out, "spawned") {
		t.Errorf("describe: %v %q", err, out)
	}
	if out, _, err := ember("logs", "clisim"); err != nil || !strings.Contains(out, "POST /predict 200") {
		t.Errorf("logs: %v %q", err, out)
	}
	if _, errs, err := ember("run", "missing"); err == nil || !strings.Contains(errs, `unknown function "missing"`) {
		t.Errorf("run missing: %v %q", err, errs)
	}
	out, errs, err = ember("advise", "--function", "clisim")
	if err != nil || !strings.Contains(out, "measured clisim over") || !strings.Contains(out, "requests/day") || !strings.Contains(out, "spec change (merge into clisim's spec") {
		t.Errorf("advise --function: %v %q %q", err, out, errs)
	}
	if out, _, err := ember("rm", "clisim"); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("rm: %v %q", err, out)
	}
	if _, errs, err := ember("describe", "clisim"); err == nil || !strings.Contains(errs, "unknown function") {
		t.Errorf("describe after rm: %v %q", err, errs)
	}
}

func TestMetrics(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("metered", "{min: 0, max: 1}"))
	if r := s.call("POST", "/v1/run/metered/predict", `{}`); r.status != 200 {
		t.Fatalf("call: %d", r.status)
	}
	r := s.call("GET", "/metrics", "")
	for _, want := range []string{
		`ember_cold_start_seconds_bucket{function="metered",phase="ready"`,
		`ember_cold_start_seconds_count{function="metered",phase="total"} 1`,
		`ember_requests_total{code="200",function="metered"} 1`,
		`ember_request_duration_seconds_count{function="metered"} 1`,
		`ember_queue_wait_seconds_count{function="metered"} 1`,
		`ember_instances{state="ready"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := osWriteFile(path, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

var _ = fmt.Sprintf
