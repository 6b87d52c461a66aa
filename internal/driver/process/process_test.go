package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/eventually"
)

// simBin is the sim example server, built once by TestMain; "" when no Go
// toolchain is available.
var simBin string

const (
	// helperEnv switches the test binary into a helper "server" process
	// that starts one instance and waits to be killed.
	helperEnv    = "EMBER_PROCESS_TEST_HELPER"
	helperSimEnv = "EMBER_PROCESS_TEST_SIM"
	helperPIDTag = "INSTANCE_PID"
	// serveEnv switches the test binary into a plain HTTP server on
	// $PORT whose /health answers as the value says ("close": with
	// Connection: close).
	serveEnv = "EMBER_PROCESS_TEST_SERVE"
	// guardEnv switches the test binary into the guard helper.
	guardEnv = "EMBER_PROCESS_TEST_GUARD"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	if mode := os.Getenv(serveEnv); mode != "" {
		os.Exit(serveMain(mode))
	}
	if os.Getenv(guardEnv) != "" {
		IgnoreStopSignals()
		if err := RunGuard(os.Stdin, KillGroup); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "ember-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if gobin, err := exec.LookPath("go"); err == nil {
		out := filepath.Join(dir, "sim")
		build := exec.Command(gobin, "build", "-o", out, "github.com/ember-run/ember/examples/sim")
		if b, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building examples/sim: %v\n%s", err, b)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		simBin = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperMain plays an Ember server: it starts a sim instance, prints the
// instance's pid and blocks until stdin closes. The test kills it with
// SIGKILL, which gives it no chance to stop the instance itself.
func helperMain() int {
	d := New(nil, Options{})
	inst, err := d.Start(context.Background(), driver.StartSpec{
		Function: "helper", InstanceID: "helper-1",
		Command:    []string{os.Getenv(helperSimEnv)},
		HealthPath: "/health",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("%s %d\n", helperPIDTag, inst.(*Instance).PID())
	io.Copy(io.Discard, os.Stdin)
	inst.Stop(context.Background())
	return 0
}

func needSim(t *testing.T) {
	t.Helper()
	if simBin == "" {
		t.Skip("no go toolchain to build examples/sim")
	}
}

// alive reports whether pid is a live process. A zombie counts as dead: it
// has exited, and in a container without a reaping init it may never be
// collected.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	return ok && len(rest) > 0 && rest[0] != 'Z' && rest[0] != 'X'
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, 10*time.Second, 5*time.Millisecond, what, cond)
}

// tailValue waits for an output line "<tag> <value>" and returns the value.
func tailValue(t *testing.T, inst *Instance, tag string) string {
	t.Helper()
	var v string
	waitFor(t, "output line "+tag, func() bool {
		for _, l := range inst.Tail(ringLines) {
			if rest, ok := strings.CutPrefix(l, tag+" "); ok {
				v = rest
				return true
			}
		}
		return false
	})
	return v
}

// syncBuffer is a bytes.Buffer safe for the driver's copier and the test.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	onWrite func() // if set, called after each write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.onWrite != nil {
		b.onWrite()
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t *testing.T, s driver.StartSpec) *Instance {
	t.Helper()
	return startOn(t, New(nil, Options{}), s)
}

// startOn starts s on d (health path /health unless set) and stops the
// instance when the test ends.
func startOn(t *testing.T, d *Driver, s driver.StartSpec) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.HealthPath == "" {
		s.HealthPath = "/health"
	}
	di, err := d.Start(ctx, s)
	if err != nil {
		t.Fatalf("Start %s: %v (tail %q)", s.InstanceID, err, startTail(err))
	}
	inst := di.(*Instance)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		inst.Stop(ctx)
	})
	return inst
}

func startTail(err error) []string {
	var se *driver.StartError
	if errors.As(err, &se) {
		return se.Tail
	}
	return nil
}

func TestStartReady(t *testing.T) {
	needSim(t)
	t.Parallel()
	tests := []struct {
		name       string
		env        map[string]string
		healthPath string
	}{
		{name: "immediately ready"},
		{name: "slow to listen", env: map[string]string{"SIM_START_DELAY": "30ms"}},
		{name: "slow to load", env: map[string]string{"SIM_LOAD_DELAY": "50ms"}},
		{name: "health path without slash", healthPath: "health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []driver.Phase
			inst := start(t, driver.StartSpec{
				Function: "sim", InstanceID: "sim-1",
				Command:    []string{simBin},
				Env:        tt.env,
				HealthPath: tt.healthPath,
				OnPhase: func(p driver.Phase) {
					mu.Lock()
					defer mu.Unlock()
					seen = append(seen, p)
				},
			})

			phases := inst.Phases()
			var names []string
			for k, p := range phases {
				names = append(names, p.Name)
				if k > 0 && p.At.Before(phases[k-1].At) {
					t.Errorf("phase %s at %v is before %s at %v", p.Name, p.At, phases[k-1].Name, phases[k-1].At)
				}
			}
			if diff := cmp.Diff([]string{driver.PhaseSpawned, driver.PhaseListening, driver.PhaseReady}, names); diff != "" {
				t.Errorf("phases (-want +got):\n%s", diff)
			}
			mu.Lock()
			if diff := cmp.Diff(phases, seen); diff != "" {
				t.Errorf("OnPhase calls differ from Phases() (-Phases +OnPhase):\n%s", diff)
			}
			mu.Unlock()

			// Ready means ready: the first request after Start succeeds.
			resp, err := http.Get("http://" + inst.Addr() + "/health")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := resp.StatusCode, http.StatusOK; got != want {
				t.Errorf("GET /health right after Start = %d, want %d", got, want)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := inst.Stop(ctx); err != nil {
				t.Errorf("Stop: %v", err)
			}
			select {
			case <-inst.Done():
			default:
				t.Fatal("Done not closed after Stop returned")
			}
			if err := inst.Err(); !errors.Is(err, driver.ErrExited) || err.Error() != "exited with status 0" {
				t.Errorf("Err() = %v, want \"exited with status 0\" wrapping ErrExited", err)
			}
		})
	}
}

func TestStartFailsWhenProcessExits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		command    []string
		env        map[string]string
		needSim    bool
		wantReason string
		wantLast   string
		wantCode   int // exit code in the *exec.ExitError; -1 for a signal
	}{
		{
			name:       "exit status",
			command:    []string{"/bin/sh", "-c", `echo booting; echo "fatal: no GPU" >&2; exit 3`},
			wantReason: "exited with status 3 before becoming ready",
			wantLast:   "fatal: no GPU",
			wantCode:   3,
		},
		{
			name:       "killed by signal",
			command:    []string{"/bin/sh", "-c", `echo "out of memory"; kill -9 $$`},
			wantReason: "killed by signal 9 before becoming ready",
			wantLast:   "out of memory",
			wantCode:   -1,
		},
		{
			name:       "sim failing to load",
			needSim:    true,
			env:        map[string]string{"SIM_FAIL_START": "weights not found"},
			wantReason: "exited with status 1 before becoming ready",
			wantLast:   "sim: weights not found",
			wantCode:   1,
		},
		{
			name:       "exits cleanly before ready",
			command:    []string{"/bin/sh", "-c", `echo nothing to do`},
			wantReason: "exited with status 0 before becoming ready",
			wantLast:   "nothing to do",
			wantCode:   0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			command := tt.command
			if tt.needSim {
				needSim(t)
				command = []string{simBin}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			inst, err := New(nil, Options{}).Start(ctx, driver.StartSpec{Command: command, Env: tt.env, HealthPath: "/health"})
			if err == nil {
				inst.Stop(ctx)
				t.Fatal("Start succeeded, want an error")
			}
			var se *driver.StartError
			if !errors.As(err, &se) {
				t.Fatalf("Start error %v (%T) is not a *driver.StartError", err, err)
			}
			if got := se.Reason; got != tt.wantReason {
				t.Errorf("Reason = %q, want %q", got, tt.wantReason)
			}
			if len(se.Tail) == 0 || se.Tail[len(se.Tail)-1] != tt.wantLast {
				t.Errorf("Tail = %q, want it to end with %q", se.Tail, tt.wantLast)
			}
			if !strings.HasSuffix(err.Error(), tt.wantLast) {
				t.Errorf("Error() = %q, want the last output line in it", err)
			}
			if !errors.Is(err, driver.ErrExited) {
				t.Errorf("error %v does not wrap driver.ErrExited", err)
			}
			var ee *exec.ExitError
			if tt.wantCode != 0 {
				if !errors.As(err, &ee) {
					t.Fatalf("error %v does not wrap *exec.ExitError", err)
				}
				if got := ee.ExitCode(); got != tt.wantCode {
					t.Errorf("exit code = %d, want %d", got, tt.wantCode)
				}
			}
		})
	}
}

func TestStartCannotRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		command []string
		wantIs  error
	}{
		{name: "not on PATH", command: []string{"ember-no-such-program"}, wantIs: exec.ErrNotFound},
		{name: "missing file", command: []string{"/nonexistent/server"}, wantIs: os.ErrNotExist},
		{name: "empty command", command: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(nil, Options{}).Start(context.Background(), driver.StartSpec{Command: tt.command})
			var se *driver.StartError
			if !errors.As(err, &se) {
				t.Fatalf("Start error %v (%T) is not a *driver.StartError", err, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Start error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

type cancelWhen int

const (
	deadline       cancelWhen = iota // the 300ms deadline ends the start
	onOutput                         // cancel at the process's first output
	afterListening                   // cancel 100ms after the port opens
)

func TestStartGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		command    func() []string
		env        map[string]string
		cancel     cancelWhen // cancel instead of a 300ms deadline
		wantErr    error
		wantReason string
	}{
		{
			name:       "never listens",
			command:    func() []string { return []string{"/bin/sh", "-c", `echo "PID $$"; exec sleep 1000`} },
			wantErr:    context.DeadlineExceeded,
			wantReason: "waiting for port",
		},
		{
			name:       "listens but never loads",
			command:    func() []string { return []string{"/bin/sh", "-c", `echo "PID $$"; exec "$0"`, simBin} },
			env:        map[string]string{"SIM_LOAD_DELAY": "1h"},
			cancel:     afterListening,
			wantErr:    context.Canceled,
			wantReason: "health check /health: 503 Service Unavailable",
		},
		{
			name:       "caller cancels",
			command:    func() []string { return []string{"/bin/sh", "-c", `echo "PID $$"; exec sleep 1000`} },
			cancel:     onOutput,
			wantErr:    context.Canceled,
			wantReason: "waiting for port",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.env != nil {
				needSim(t)
			}
			out := &syncBuffer{}
			timeout := 300 * time.Millisecond
			if tt.cancel != deadline {
				timeout = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			spec := driver.StartSpec{Command: tt.command(), Env: tt.env, HealthPath: "/health", Output: out}
			switch tt.cancel {
			case onOutput: // once the process has said it is running
				out.onWrite = cancel
			case afterListening:
				// The driver probes health as soon as the port opens;
				// give that probe time to see the 503 (a deadline from
				// Start would depend on how fast sim boots).
				spec.OnPhase = func(p driver.Phase) {
					if p.Name == driver.PhaseListening {
						time.AfterFunc(100*time.Millisecond, cancel)
					}
				}
			}
			inst, err := New(nil, Options{}).Start(ctx, spec)
			if err == nil {
				inst.Stop(context.Background())
				t.Fatal("Start succeeded, want an error")
			}
			var se *driver.StartError
			if !errors.As(err, &se) {
				t.Fatalf("Start error %v (%T) is not a *driver.StartError", err, err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Start error %v does not wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(se.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to mention %q", se.Reason, tt.wantReason)
			}
			// Start waits for the process to be collected before it
			// returns, so the pid must already be gone.
			line, _, _ := strings.Cut(out.String(), "\n")
			pid, err := strconv.Atoi(strings.TrimPrefix(line, "PID "))
			if err != nil {
				t.Fatalf("no pid in output %q", out.String())
			}
			if alive(pid) {
				t.Errorf("process %d still running after Start gave up", pid)
			}
		})
	}
}

func TestInstanceGroupEnds(t *testing.T) {
	needSim(t)
	t.Parallel()
	tests := []struct {
		name     string
		end      func(t *testing.T, inst *Instance)
		wantExit string
	}{
		{
			name: "Stop",
			end: func(t *testing.T, inst *Instance) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := inst.Stop(ctx); err != nil {
					t.Errorf("Stop: %v", err)
				}
			},
			wantExit: "exited with status 0",
		},
		{
			name: "instance crashes",
			end: func(t *testing.T, inst *Instance) {
				resp, err := http.Post("http://"+inst.Addr()+"/predict", "application/json", strings.NewReader(`{"crash":true}`))
				if err == nil {
					resp.Body.Close()
					t.Errorf("crash request got a response: %s", resp.Status)
				}
				<-inst.Done()
			},
			wantExit: "exited with status 2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := start(t, driver.StartSpec{
				Command: []string{"/bin/sh", "-c", `sleep 1000 & echo "GRANDCHILD $!"; exec "$0"`, simBin},
			})
			grandchild, err := strconv.Atoi(tailValue(t, inst, "GRANDCHILD"))
			if err != nil {
				t.Fatal(err)
			}
			if !alive(grandchild) || !alive(inst.PID()) {
				t.Fatalf("instance %d or its child %d not running after Start", inst.PID(), grandchild)
			}

			tt.end(t, inst)

			if err := inst.Err(); err == nil || err.Error() != tt.wantExit {
				t.Errorf("Err() = %v, want %q", err, tt.wantExit)
			}
			if alive(inst.PID()) {
				t.Errorf("instance %d still running after Done", inst.PID())
			}
			waitFor(t, "the instance's child to exit", func() bool { return !alive(grandchild) })
		})
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	needSim(t)
	t.Parallel()
	inst := start(t, driver.StartSpec{Command: []string{simBin}, Env: map[string]string{"SIM_IGNORE_SIGTERM": "1"}})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := inst.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop of an instance ignoring SIGTERM = %v, want it to wrap DeadlineExceeded", err)
	}
	if got, want := fmt.Sprint(inst.Err()), "killed by signal 9"; got != want {
		t.Errorf("Err() = %q, want %q", got, want)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestStopConcurrent(t *testing.T) {
	needSim(t)
	t.Parallel()
	inst := start(t, driver.StartSpec{Command: []string{simBin}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 3)
	for range cap(errs) {
		go func() { errs <- inst.Stop(ctx) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
}

func TestEnvironment(t *testing.T) {
	needSim(t)
	t.Parallel()
	var out syncBuffer
	// PORT=0 for sim itself proves that the ${PORT} argument reached it:
	// it is listening where the driver expects only because of --port.
	script := `echo "ENV arg=$1 env=$SIM_TEST_PORT port=$PORT fn=$EMBER_FUNCTION inst=$EMBER_INSTANCE extra=$SIM_TEST_EXTRA dir=$(pwd)"; PORT=0 exec "$0" --port "$1"`
	dir := t.TempDir()
	inst := start(t, driver.StartSpec{
		Function: "fn-a", InstanceID: "fn-a-7",
		Command: []string{"/bin/sh", "-c", script, simBin, "${PORT}"},
		Env:     map[string]string{"SIM_TEST_PORT": "${PORT}", "SIM_TEST_EXTRA": "x y"},
		Workdir: dir,
		Output:  &out,
	})
	_, port, _ := strings.Cut(inst.Addr(), ":")
	want := fmt.Sprintf("arg=%s env=%s port=%s fn=fn-a inst=fn-a-7 extra=x y dir=%s", port, port, port, dir)
	if got := tailValue(t, inst, "ENV"); got != want {
		t.Errorf("instance saw\n  %s\nwant\n  %s", got, want)
	}
	if !strings.Contains(out.String(), "ENV "+want+"\n") {
		t.Errorf("Output = %q, want it to hold the ENV line", out.String())
	}

	// sim reports EMBER_INSTANCE back in predictions.
	resp, err := http.Post("http://"+inst.Addr()+"/predict", "application/json", strings.NewReader(`{"echo":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"instance":"fn-a-7"`) {
		t.Errorf("predict = %s, want instance fn-a-7", body)
	}
}

// TestNoGoroutinesLeft checks that an instance's goroutines (reaper and
// output copier) end with it. It is not parallel, so the count is ours.
func TestNoGoroutinesLeft(t *testing.T) {
	needSim(t)
	before := runtime.NumGoroutine()
	d := New(nil, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, command := range [][]string{{simBin}, {"/bin/sh", "-c", "exit 1"}, {"ember-no-such-program"}} {
		inst, err := d.Start(ctx, driver.StartSpec{Command: command, HealthPath: "/health", Output: io.Discard})
		if err == nil {
			if err := inst.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	canceled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if _, err := d.Start(canceled, driver.StartSpec{Command: []string{simBin}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled ctx = %v, want it to wrap context.Canceled", err)
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestInstanceDiesWithServer kills a helper "server" process with SIGKILL,
// so it cannot clean up, and checks that its instance dies too.
func TestInstanceDiesWithServer(t *testing.T) {
	needSim(t)
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(self)
	helper.Env = append(os.Environ(), helperEnv+"=1", helperSimEnv+"="+simBin)
	helper.Stderr = os.Stderr
	stdin, err := helper.StdinPipe() // kept open: the helper runs until killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Wait()
	defer helper.Process.Kill()

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the helper's instance pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, helperPIDTag+" ")))
	if err != nil {
		t.Fatalf("helper printed %q: %v", line, err)
	}
	if !alive(pid) {
		t.Fatalf("instance %d not running while the helper lives", pid)
	}
	t.Cleanup(func() {
		if t.Failed() && alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	waitFor(t, fmt.Sprintf("instance %d to die with its server", pid), func() bool { return !alive(pid) })
}

// A pre-started instance handed to a function sends its later output to the
// function's log, and nothing after the switch to the first sink.
func TestRedirectOutput(t *testing.T) {
	needSim(t)
	t.Parallel()
	var first, second syncBuffer
	inst := start(t, driver.StartSpec{Function: "sim", InstanceID: "sim-r", Command: []string{simBin}, Output: &first})
	get := func(path string) {
		t.Helper()
		resp, err := http.Get("http://" + inst.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("/before")
	waitFor(t, "first request logged to the first sink", func() bool { return strings.Contains(first.String(), "/before") })
	inst.Redirect(&second)
	get("/after")
	waitFor(t, "second request logged to the new sink", func() bool { return strings.Contains(second.String(), "/after") })
	if strings.Contains(first.String(), "/after") {
		t.Errorf("first sink got output after Redirect:\n%s", first.String())
	}
	if tail := strings.Join(inst.Tail(10), "\n"); !strings.Contains(tail, "/before") || !strings.Contains(tail, "/after") {
		t.Errorf("tail should keep lines from both sides of the switch, got:\n%s", tail)
	}
}

// startGroup starts `sh -c script` as the leader of its own process group.
func startGroup(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	return cmd
}

// groupAlive reports whether a live (not zombie) process is in group
// pgid; zombies wait for whoever reaps orphans, which varies by machine.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		var state string
		var ppid, pgrp int
		if _, err := fmt.Sscanf(s[i+1:], " %s %d %d", &state, &ppid, &pgrp); err == nil && pgrp == pgid && state != "Z" {
			return true
		}
	}
	return false
}

// When the server's end of the guard's pipe closes (as it does when the
// server dies, SIGKILL included) the guard kills every registered group,
// grandchildren too, and leaves unregistered ones alone.
func TestGuardKillsRegisteredGroups(t *testing.T) {
	t.Setenv(guardEnv, "1")
	g, err := StartGuard([]string{os.Args[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The shell stays the parent of a grandchild, which Pdeathsig on the
	// shell would not reach.
	tracked := startGroup(t, "sleep 300 & sleep 300; true")
	released := startGroup(t, "sleep 300; true")
	g.Track(tracked.Process.Pid)
	g.Track(released.Process.Pid)
	g.Untrack(released.Process.Pid)
	if err := g.Close(); err != nil {
		t.Fatalf("guard exit: %v", err)
	}
	waitFor(t, "the tracked group, grandchild included, to die", func() bool {
		tracked.Process.Wait() // reap the leader so it does not linger as a zombie
		return !groupAlive(tracked.Process.Pid)
	})
	if !groupAlive(released.Process.Pid) {
		t.Error("the guard killed a group that was unregistered")
	}
	if err := g.Err(); err != nil {
		t.Errorf("guard write error: %v", err)
	}
}

// The helper's bookkeeping: what is still registered at EOF is killed; a
// pid registered twice (reused by a new instance before the old one's
// unregistration arrived) stays registered after one -; junk is ignored.
func TestRunGuardBookkeeping(t *testing.T) {
	in := strings.Join([]string{
		"+100", "+200", "-100", // 100 ended
		"+300", "+300", "-300", // 300 reused before the old -300 arrived
		"+1", "+0", "+-5", "x9", "+abc", "", // never init, everything, or junk
	}, "\n") + "\n"
	var killed []int
	if err := RunGuard(strings.NewReader(in), func(pgid int) { killed = append(killed, pgid) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(killed)
	if !slices.Equal(killed, []int{200, 300}) {
		t.Errorf("killed %v, want [200 300]", killed)
	}
}

// A helper that dies is replaced at the next registration, and the new one
// knows every group registered before: closing the pipe (the server's
// death) still kills them all.
func TestGuardRearmsAfterAFailedWrite(t *testing.T) {
	t.Setenv(guardEnv, "1")
	g, err := StartGuard([]string{os.Args[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := startGroup(t, "sleep 300 & sleep 300; true")
	g.Track(before.Process.Pid)

	g.mu.Lock()
	first := g.h
	g.mu.Unlock()
	if err := first.cmd.Process.Kill(); err != nil { // the helper dies behind the server's back
		t.Fatal(err)
	}
	<-first.exited

	after := startGroup(t, "sleep 300; true")
	g.Track(after.Process.Pid) // this write fails, and re-arms
	if err := g.Err(); err != nil {
		t.Fatalf("guard after re-arm: %v, want nil", err)
	}
	g.mu.Lock()
	second := g.h
	g.mu.Unlock()
	if second == nil || second == first {
		t.Fatal("the guard did not start a new helper")
	}
	if err := g.Close(); err != nil {
		t.Fatalf("guard exit: %v", err)
	}
	for name, c := range map[string]*exec.Cmd{"tracked before the failure": before, "tracked at the failure": after} {
		waitFor(t, "the group "+name+" to die", func() bool {
			c.Process.Wait()
			return !groupAlive(c.Process.Pid)
		})
	}
}
