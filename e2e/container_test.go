package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// engine is a container engine answering the Docker Engine API at
// $DOCKER_HOST; the tests that need one skip without it.
type engine struct {
	cli  *client.Client
	host string
}

var simImage struct {
	once sync.Once
	ref  string
	err  error
}

// needEngine returns the engine at $DOCKER_HOST, or skips: .ci/run starts
// Podman's Docker-compatible service and exports DOCKER_HOST.
func needEngine(t *testing.T) *engine {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		t.Skip("no container engine: set DOCKER_HOST (.ci/run starts `podman system service` and exports it)")
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatalf("engine client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		t.Skipf("container engine at DOCKER_HOST=%s does not answer (.ci/run starts one): %v", host, err)
	}
	return &engine{cli: cli, host: host}
}

// image builds (once per test binary, and once per content on the engine)
// a FROM scratch image holding a static build of examples/sim, tagged by
// the binary's hash so an unchanged sim is never rebuilt. No registry is
// needed.
func (e *engine) image(t *testing.T) string {
	t.Helper()
	simImage.once.Do(func() { simImage.ref, simImage.err = buildSimImage() })
	if simImage.err != nil {
		t.Fatalf("build sim image: %v", simImage.err)
	}
	return simImage.ref
}

func buildSimImage() (string, error) {
	dir, err := os.MkdirTemp("", "ember-sim-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "sim"), "../examples/sim")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("static sim: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sim"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	ref := "localhost/ember-sim:" + hex.EncodeToString(sum[:6])
	cliName := "podman"
	if _, err := exec.LookPath(cliName); err != nil {
		cliName = "docker"
	}
	if exec.Command(cliName, "image", "inspect", ref).Run() == nil {
		return ref, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\nCOPY sim /sim\nENTRYPOINT [\"/sim\"]\n"), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command(cliName, "build", "-q", "-t", ref, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s build: %v\n%s", cliName, err, out)
	}
	return ref, nil
}

// containers lists the engine's containers of function fn (any owner).
func (e *engine) containers(t *testing.T, fn string) []string {
	t.Helper()
	list, err := e.cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", driver.LabelFunction+"="+fn)})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// containerServer starts ember serve with the settings this host's engine
// needs (runc; ulimits within the engine's own, it lacks CAP_SYS_RESOURCE).
// Prewarming is off unless extra turns it on (a later flag wins), so a
// function at zero has no container: container_prewarm_test.go covers it.
func containerServer(t *testing.T, e *engine, dataDir string, extra ...string) *server {
	t.Helper()
	args := append([]string{"--container-host", e.host, "--container-oci-runtime", "runc",
		"--container-ulimit", "nofile=1024:1024,nproc=1024:1024", "--container-prewarm", "0"}, extra...)
	return startServer(t, dataDir, args...)
}

// uniqueName keeps functions of parallel or repeated runs apart on a
// shared engine.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
}

func TestContainerScalesFromZeroServesWarmAndStopsWhenIdle(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	for _, network := range []string{"bridge", "host"} {
		t.Run(network, func(t *testing.T) {
			s := containerServer(t, e, "", "--container-network", network)
			name := uniqueName("ctr-" + network)
			s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 0, max: 1, idle_timeout: 1s}\n", name, image))
			if got := e.containers(t, name); len(got) != 0 {
				t.Fatalf("containers before any call = %v, want none (scale from zero)", got)
			}

			first := s.call("POST", "/v1/run/"+name+"/predict", `{"echo":"hi"}`)
			if first.status != 200 || !strings.Contains(string(first.body), `"hi"`) {
				t.Fatalf("first call = %d %s", first.status, first.body)
			}
			if got := first.header.Get(api.HeaderColdStart); got != "true" {
				t.Errorf("first call Ember-Cold-Start = %q, want true", got)
			}
			if st := first.header.Get(api.HeaderServerTiming); !strings.Contains(st, "created") || !strings.Contains(st, "started") {
				t.Errorf("Server-Timing = %q, want the container phases created and started", st)
			}
			ins := s.instances(name)
			if len(ins) != 1 {
				t.Fatalf("instances = %+v, want 1", ins)
			}
			for _, ph := range []string{"image", "created", "started", "listening", "ready"} {
				if !slices.Contains(ins[0].PhaseOrder, ph) {
					t.Errorf("phases %v lack %q", ins[0].PhaseOrder, ph)
				}
			}
			if got := e.containers(t, name); len(got) != 1 {
				t.Fatalf("containers while serving = %v, want 1", got)
			}

			second := s.call("POST", "/v1/run/"+name+"/predict", `{"echo":"again"}`)
			if second.status != 200 || second.header.Get(api.HeaderColdStart) != "" {
				t.Fatalf("second call = %d cold=%q %s, want a warm 200", second.status, second.header.Get(api.HeaderColdStart), second.body)
			}

			// The container's own output reaches `ember logs`.
			eventually(t, 10*time.Second, "container output in ember logs", func() bool {
				lines, err := s.c.Logs(context.Background(), name, 50)
				if err != nil {
					return false
				}
				return slices.ContainsFunc(lines, func(l api.LogLine) bool { return strings.Contains(l.Line, "EMBER_SIM_READY") })
			})

			eventually(t, 30*time.Second, "idle container stopped and removed", func() bool {
				return len(s.instances(name)) == 0 && len(e.containers(t, name)) == 0
			})
		})
	}
}

func TestContainerCrashReportsLastLines(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	s := containerServer(t, e, "")
	name := uniqueName("ctr-crash")
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0, SIM_FAIL_START: \"weights file is corrupt (xyz-42)\"}\nscaling: {min: 0, max: 1}\n", name, image))
	res := s.call("POST", "/v1/run/"+name+"/predict", `{}`)
	if res.status != 502 && res.status != 503 {
		t.Fatalf("call to a crashing container = %d %s, want 502/503", res.status, res.body)
	}
	for _, want := range []string{"weights file is corrupt (xyz-42)", "status 1"} {
		if !strings.Contains(string(res.body), want) {
			t.Errorf("error body %s lacks %q", res.body, want)
		}
	}
	eventually(t, 20*time.Second, "failed container removed", func() bool { return len(e.containers(t, name)) == 0 })
}

func TestContainerOOMIsTheFailureReason(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	s := containerServer(t, e, "")
	name := uniqueName("ctr-oom")
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0, SIM_ALLOC_MB: \"256\"}\nresources: {cpu: 0.5, memory: 48Mi}\nscaling: {min: 0, max: 1}\n", name, image))
	res := s.call("POST", "/v1/run/"+name+"/predict", `{}`)
	if res.status != 502 && res.status != 503 {
		t.Fatalf("call = %d %s, want 502/503", res.status, res.body)
	}
	if !strings.Contains(string(res.body), "OOM killed") || !strings.Contains(string(res.body), "48Mi") {
		t.Errorf("error body %s does not say the container was OOM killed at its 48Mi limit", res.body)
	}
}

func TestContainerLeftByKilledServerIsRemovedAtRestart(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	dataDir := t.TempDir()
	s := containerServer(t, e, dataDir)
	name := uniqueName("ctr-leak")
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 1, max: 1}\n", name, image))
	eventually(t, 30*time.Second, "min instance ready", func() bool {
		ins := s.instances(name)
		return len(ins) == 1 && ins[0].State == "ready"
	})
	before := e.containers(t, name)
	if len(before) != 1 {
		t.Fatalf("containers = %v, want 1", before)
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	if got := e.containers(t, name); !slices.Equal(got, before) {
		t.Fatalf("after SIGKILL containers = %v, want the old one still there (%v): the engine keeps it", got, before)
	}

	s2 := containerServer(t, e, dataDir)
	eventually(t, 30*time.Second, "old container removed, a new one serving", func() bool {
		got := e.containers(t, name)
		return len(got) == 1 && got[0] != before[0]
	})
	if res := s2.call("POST", "/v1/run/"+name+"/predict", `{"echo":1}`); res.status != 200 {
		t.Fatalf("call after restart = %d %s", res.status, res.body)
	}
	if !strings.Contains(s2.logs.String(), "removed containers left by an earlier run") {
		t.Errorf("server log does not report the removal")
	}
	s2.c.Delete(context.Background(), name)
	eventually(t, 30*time.Second, "containers gone after rm", func() bool { return len(e.containers(t, name)) == 0 })
}
