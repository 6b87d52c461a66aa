package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGPUsFromInventory runs the allocator end to end on an inventory in
// nvidia-smi's format (this machine has no GPU): each GPU process
// instance gets its own GPU as CUDA_VISIBLE_DEVICES, a third finds none
// free and says who holds them, and a GPU type the machine lacks is
// refused at deploy.
func TestGPUsFromInventory(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "gpus.csv")
	if err := os.WriteFile(inv, []byte("0, GPU-11111111-aaaa, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-22222222-bbbb, NVIDIA A100-SXM4-40GB, 40960\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "", "--gpus", "file:"+inv)
	gpuFn := func(name, min string) string {
		return simSpec(name, "{min: "+min+", max: 1}", "resources: {gpu: {type: a100-40gb, count: 1}}")
	}
	s.deploy(gpuFn("g1", "1"))
	s.deploy(gpuFn("g2", "1"))
	s.waitReady("g1")
	s.waitReady("g2")
	var seen []string
	for _, fn := range []string{"g1", "g2"} {
		r := s.call("POST", "/v1/run/"+fn+"/whoami", "{}")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", fn, r.status, r.body)
		}
		var who struct{ Env []string }
		if err := json.Unmarshal(r.body, &who); err != nil {
			t.Fatal(err)
		}
		var cuda []string
		for _, e := range who.Env {
			if v, ok := strings.CutPrefix(e, "CUDA_VISIBLE_DEVICES="); ok {
				cuda = append(cuda, v)
			}
		}
		if len(cuda) != 1 {
			t.Fatalf("%s: CUDA_VISIBLE_DEVICES = %v, want one value (%s)", fn, cuda, r.body)
		}
		seen = append(seen, cuda[0])
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"GPU-11111111-aaaa", "GPU-22222222-bbbb"}) {
		t.Errorf("the instances see %v, want one GPU each, never the same", seen)
	}

	// Both GPUs are held: a third instance cannot start and says why.
	s.deploy(gpuFn("g3", "0"))
	r := s.call("POST", "/v1/run/g3", "{}")
	if r.status < 500 || !strings.Contains(string(r.body), "no free GPU") || !strings.Contains(string(r.body), "by g1/") {
		t.Errorf("third GPU function: %d %s; want a 5xx naming the holders", r.status, r.body)
	}

	// A type this machine lacks is refused at deploy, naming what it has.
	_, err := s.c.Deploy(context.Background(), []byte(simSpec("h", "{min: 0, max: 1}", "resources: {gpu: {type: h100-80gb, count: 1}}")))
	if err == nil || !strings.Contains(err.Error(), "resources.gpu: no matching GPU on this server: this server has no h100-80gb GPU (it has 2× a100-40gb)") {
		t.Errorf("deploy of an h100 function: %v", err)
	}
}
