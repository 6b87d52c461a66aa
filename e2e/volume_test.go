package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestContainerNamedVolumeSharedReadOnly: a named volume is created on
// first use and mounted read-only unless the spec asks otherwise. One
// function writes weights into it (read_only: false); both instances of
// another read them, and cannot write.
func TestContainerNamedVolumeSharedReadOnly(t *testing.T) {
	e := needEngine(t)
	image := e.image(t)
	s := containerServer(t, e, "")
	vol := uniqueName("weights")
	t.Cleanup(func() {
		e.cli.VolumeRemove(context.Background(), "ember-"+vol, client.VolumeRemoveOptions{Force: true})
	})
	writer, reader := uniqueName("vol-writer"), uniqueName("vol-reader")
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 0, max: 1}\nvolumes: {/models: {volume: %s, read_only: false}}\n", writer, image, vol))
	if r := s.call("PUT", "/v1/run/"+writer+"/file?path=/models/w.txt", "weights-v1"); r.status != 204 {
		t.Fatalf("write through the read-write mount: %d %s", r.status, r.body)
	}

	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 2, max: 2, concurrency: 1}\nvolumes: {/models: %s}\n", reader, image, vol))
	s.waitReady(reader)
	eventually(t, 60*time.Second, "two reader instances ready", func() bool {
		n := 0
		for _, in := range s.instances(reader) {
			if in.State == "ready" {
				n++
			}
		}
		return n == 2
	})
	// Two calls at once with concurrency 1: one on each instance.
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.call("GET", "/v1/run/"+reader+"/file?path=/models/w.txt&sleep_ms=300", "")
		}()
	}
	wg.Wait()
	instances := map[string]bool{}
	for i, r := range results {
		if r.status != 200 || string(r.body) != "weights-v1" {
			t.Fatalf("read %d: %d %q, want 200 weights-v1", i, r.status, r.body)
		}
		instances[r.header.Get("Sim-Instance")] = true
	}
	if len(instances) != 2 {
		t.Errorf("reads answered by %v, want both instances", instances)
	}

	r := s.call("PUT", "/v1/run/"+reader+"/file?path=/models/evil.txt", "overwrite")
	if r.status != 500 || !strings.Contains(string(r.body), "read-only file system") {
		t.Errorf("write through the default (read-only) mount: %d %s, want 500 read-only file system", r.status, r.body)
	}
}

// TestContainerImageRemovedAfterDeploy: a cold start does not ask the
// engine about an image it saw present (one round trip less per cold
// start), yet an image removed since deploy still gets the precise
// "not present" reason, not a raw create error.
func TestContainerImageRemovedAfterDeploy(t *testing.T) {
	e := needEngine(t)
	ref := "localhost/" + uniqueName("ember-e2e-gone") + ":1"
	if _, err := e.cli.ImageTag(context.Background(), client.ImageTagOptions{Source: e.image(t), Target: ref}); err != nil {
		t.Fatal(err)
	}
	removeTag := func() {
		e.cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{})
	}
	t.Cleanup(removeTag)
	s := containerServer(t, e, "")
	name := uniqueName("ctr-gone")
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: {min: 0, max: 1, idle_timeout: 1s}\n", name, ref))
	if r := s.call("POST", "/v1/run/"+name+"/predict", `{}`); r.status != 200 {
		t.Fatalf("first call: %d %s", r.status, r.body)
	}
	eventually(t, 30*time.Second, "idle instance stopped", func() bool { return len(s.instances(name)) == 0 })
	removeTag()
	r := s.call("POST", "/v1/run/"+name+"/predict", `{}`)
	if r.status < 500 || !strings.Contains(string(r.body), "is not present on the engine") {
		t.Errorf("call after the image was removed: %d %s, want 5xx saying it is not present", r.status, r.body)
	}
}
