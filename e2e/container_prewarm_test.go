package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// engineContainer is what the engine says about one of a function's
// containers.
type engineContainer struct {
	ID, State, Instance, Version string
}

func (e *engine) listFn(t *testing.T, fn string) []engineContainer {
	t.Helper()
	list, err := e.cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", driver.LabelFunction+"="+fn)})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var out []engineContainer
	for _, c := range list.Items {
		out = append(out, engineContainer{ID: c.ID, State: string(c.State),
			Instance: c.Labels[driver.LabelInstance], Version: c.Labels[driver.LabelVersion]})
	}
	return out
}

// prepared waits for fn to have exactly one container, created and not
// started, other than the ones in not, and returns it.
func (e *engine) prepared(t *testing.T, fn string, not ...string) engineContainer {
	t.Helper()
	var got []engineContainer
	var c engineContainer
	eventually(t, 30*time.Second, "one prepared (created, not started) container", func() bool {
		got = e.listFn(t, fn)
		if len(got) != 1 || got[0].State != "created" || slices.Contains(not, got[0].ID) {
			return false
		}
		c = got[0]
		return true
	})
	return c
}

// TestContainerPrewarm: a container function at zero has its next
// container created ahead (labelled as Ember's, not started); the next
// cold start runs that very container (no create on its path, and the
// instance says "prewarmed"); back at zero a new one is prepared; a
// redeploy replaces it; a server killed by SIGKILL leaves it, and the
// restarted server removes it before preparing its own; a graceful stop
// and a delete remove it.
func TestContainerPrewarm(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	dataDir := t.TempDir()
	s := containerServer(t, e, dataDir, "--container-prewarm", "4")
	name := uniqueName("ctr-prewarm")
	yaml := "name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0, V: \"%d\"}\nscaling: {min: 0, max: 1, idle_timeout: 1s}\n"
	s.deploy(fmt.Sprintf(yaml, name, image, 1))
	c1 := e.prepared(t, name)
	if c1.Instance == "" || c1.Version != "1" {
		t.Fatalf("prepared container labels: instance %q version %q, want an instance id and version 1", c1.Instance, c1.Version)
	}

	first := s.call("POST", "/v1/run/"+name+"/predict", `{"echo":"hi"}`)
	if first.status != 200 || first.header.Get(api.HeaderColdStart) != "true" {
		t.Fatalf("first call = %d cold=%q %s, want a cold 200", first.status, first.header.Get(api.HeaderColdStart), first.body)
	}
	if st := first.header.Get(api.HeaderServerTiming); !strings.Contains(st, driver.PhasePrewarmed) {
		t.Errorf("Server-Timing = %q, want the %s phase", st, driver.PhasePrewarmed)
	}
	ins := s.instances(name)
	if len(ins) != 1 || ins[0].ID != c1.Instance {
		t.Fatalf("instances = %+v, want the prepared instance %s", ins, c1.Instance)
	}
	if !slices.Contains(ins[0].PhaseOrder, driver.PhasePrewarmed) || !slices.Contains(ins[0].PhaseOrder, "created") {
		t.Errorf("phases %v, want prewarmed and created", ins[0].PhaseOrder)
	}
	if got := e.listFn(t, name); len(got) != 1 || got[0].ID != c1.ID || got[0].State != "running" {
		t.Fatalf("containers while serving = %+v, want only the prepared one (%s) running: no create on the cold path", got, c1.ID[:12])
	}

	// Idle past its timeout: stopped, and the next one prepared.
	c2 := e.prepared(t, name, c1.ID)
	if c2.Instance == c1.Instance {
		t.Errorf("prepared instance id %s reused", c2.Instance)
	}

	// A redeploy changes the container's spec: the prepared one is replaced.
	s.deploy(fmt.Sprintf(yaml, name, image, 2))
	c3 := e.prepared(t, name, c2.ID)
	if c3.Version != "2" {
		t.Fatalf("after redeploy the prepared container has version %q, want 2", c3.Version)
	}

	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	if got := e.listFn(t, name); len(got) != 1 || got[0].ID != c3.ID {
		t.Fatalf("after SIGKILL containers = %+v, want the prepared %s still there (the engine keeps it)", got, c3.ID[:12])
	}
	s2 := containerServer(t, e, dataDir, "--container-prewarm", "4")
	c4 := e.prepared(t, name, c3.ID)
	if got := e.listFn(t, name); len(got) != 1 || got[0].ID != c4.ID {
		t.Fatalf("after restart containers = %+v, want only the new prepared one", got)
	}
	if res := s2.call("POST", "/v1/run/"+name+"/predict", `{"echo":1}`); res.status != 200 {
		t.Fatalf("call after restart = %d %s", res.status, res.body)
	}
	if got := e.listFn(t, name); len(got) != 1 || got[0].ID != c4.ID {
		t.Fatalf("after the call containers = %+v, want the prepared %s running", got, c4.ID[:12])
	}
	// Back at zero, then a graceful stop: the prepared container goes with
	// the server.
	c5 := e.prepared(t, name, c4.ID)
	s2.cmd.Process.Signal(syscall.SIGTERM)
	<-s2.done
	if got := e.listFn(t, name); len(got) != 0 {
		t.Fatalf("after a graceful stop containers = %+v, want none (prepared %s removed at stop)", got, c5.ID[:12])
	}

	// Deleting the function removes its prepared container.
	s3 := containerServer(t, e, dataDir, "--container-prewarm", "4")
	e.prepared(t, name)
	s3.c.Delete(context.Background(), name)
	eventually(t, 30*time.Second, "containers gone after rm", func() bool { return len(e.listFn(t, name)) == 0 })
}
