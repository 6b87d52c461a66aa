package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

var kubeWorker builtOnce

// workerImage packages the test's ember binary (a cgo build) as Ember's
// ONNX worker image with deploy/image/build.sh and imports it into the
// cluster's containerd, once per test binary. The tag is random per run,
// so runs of different checkouts on one cluster never share an image.
func (k *kubeCluster) workerImage(t *testing.T) string {
	t.Helper()
	return kubeWorker.get(t, "worker image", func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var progress bytes.Buffer
		lib, err := (&models.Client{}).RuntimeLibrary(ctx, ocrtest.CacheDir(t), os.Getenv("EMBER_ORT_LIB"), &progress)
		if err != nil {
			return "", fmt.Errorf("onnx runtime: %v\n%s", err, progress.String())
		}
		var b [4]byte
		rand.Read(b[:])
		name := "ember-worker:e2e-" + hex.EncodeToString(b[:])
		dir, err := os.MkdirTemp("", "ember-worker-image-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		cmd := exec.CommandContext(ctx, "bash", "../deploy/image/build.sh", "worker", name,
			"--binary", bins.ember, "--oci", filepath.Join(dir, "image.tar"), "--containerd", k.containerd)
		cmd.Env = append(os.Environ(), "ORT_LIB="+lib)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("deploy/image/build.sh worker: %v\n%s", err, out)
		}
		return name, nil
	})
}

// poolPods are the namespace's pooled onnx worker Pods (by their
// annotation, which List reads): running ones only when running is set.
func (k *kubeCluster) poolPods(t *testing.T, ns string, running bool) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	for _, p := range k.pods(t, ns) {
		if p.Annotations[driver.LabelFunction] == "ember:onnx-pool" && p.DeletionTimestamp == nil &&
			(!running || p.Status.Phase == corev1.PodRunning) {
			out = append(out, p)
		}
	}
	return out
}

// TestKubeONNXPool runs onnx functions as worker Pods of Ember's own image
// on the real node, with the pre-warmed pool as generic worker Pods
// (Fission's pool manager): once an onnx function is deployed the pool's
// Pod starts with ONNX Runtime loaded and no model; the function's first
// call specialises that same Pod (POST /load of a model from the models
// volume) and relabels it as the function's instance, the pool refills
// with a new Pod, and after the idle timeout the function's Pod is
// deleted while the pool's stays. A function that asks for resources
// cannot use a generic Pod and gets one of its own; both cold starts are
// logged side by side.
func TestKubeONNXPool(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime in Pods")
	}
	k := kubeTest(t)
	ns := k.namespace(t)
	image := k.workerImage(t)
	modelsDir := t.TempDir()
	c := bertgen.Small()
	c.TokenTypes, c.Labels = false, []string{"NEGATIVE", "POSITIVE"}
	model := filepath.Join(modelsDir, "sentiment")
	if err := bertgen.Write(model, c, bertgen.Options{MaxLength: 512}); err != nil {
		t.Fatal(err)
	}
	// The worker image may run as a non-root user: the models are
	// world-readable, as on a shared models volume.
	filepath.WalkDir(modelsDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	rec := k.recordPods(t, ns)
	s := startServer(t, "", "--backend", "kubernetes", "--kube-network", "host",
		"--kubeconfig", k.kubeconfig, "--kube-namespace", ns,
		"--kube-worker-image", image, "--kube-models", modelsDir,
		"--onnx-pool", "1", "--onnx-loaded", "0", "--tick", "100ms")

	// A model outside the models volume is refused at deploy, by name.
	bad := s.call("POST", "/v1/functions", "name: kbad\nruntime: onnx\ntask: text-classification\nmodel: /etc/ember-model\n")
	if bad.status != 400 || !strings.Contains(string(bad.body), "not visible to a worker Pod") {
		t.Errorf("deploy with a model outside --kube-models = %d %s, want 400 naming the models volume", bad.status, bad.body)
	}

	const name = "ksent"
	s.deploy(fmt.Sprintf("name: %s\nruntime: onnx\ntask: text-classification\nmodel: %s\nscaling: {min: 0, max: 2, idle_timeout: 3s}\n", name, model))
	eventually(t, 3*time.Minute, "a pooled worker Pod running and ready", func() bool {
		return len(k.poolPods(t, ns, true)) == 1 && s.poolReady() >= 1
	})
	pooled := k.poolPods(t, ns, true)[0]
	if n := len(k.pods(t, ns)); n != 1 {
		t.Fatalf("%d Pods before the first call, want only the pool's", n)
	}
	if got := pooled.Spec.Containers[0].Image; got != image {
		t.Errorf("pooled Pod runs %q, want the worker image %s", got, image)
	}

	start := time.Now()
	cold := s.call("POST", "/v1/run/"+name, `{"text": "I love this movie!"}`)
	coldPool := time.Since(start)
	if cold.status != 200 || cold.header.Get(api.HeaderColdStart) != "true" {
		t.Fatalf("cold call: %d cold=%q %s\n%s", cold.status, cold.header.Get(api.HeaderColdStart), cold.body, s.logs.String())
	}
	var answer struct {
		Label string
		Score float64
	}
	decode(t, cold.body, &answer)
	if answer.Label != "NEGATIVE" && answer.Label != "POSITIVE" {
		t.Errorf("answer %s, want config.json's labels", cold.body)
	}
	ins := s.instances(name)
	if len(ins) != 1 || !slices.Contains(ins[0].PhaseOrder, "pool_acquired") {
		t.Fatalf("instances %+v: want one, started from the pool (phase pool_acquired)", ins)
	}
	// The same Pod now serves the function and says so in its labels, so
	// a new leader would adopt it as the function's rather than delete it.
	var served corev1.Pod
	for _, p := range k.pods(t, ns) {
		if p.Name == pooled.Name {
			served = p
		}
	}
	if served.Annotations[driver.LabelFunction] != name || served.Annotations[driver.LabelInstance] != ins[0].ID {
		t.Errorf("the specialised Pod %s is annotated %v, want function %s instance %s",
			pooled.Name, served.Annotations, name, ins[0].ID)
	}
	if created, _ := rec.names("ember-" + name); len(created) != 0 {
		t.Errorf("Pods %v created for the function: its cold start should have taken the pooled Pod", created)
	}
	// The pool refills with a fresh generic Pod.
	eventually(t, 3*time.Minute, "the pool refilled with a new Pod", func() bool {
		p := k.poolPods(t, ns, true)
		return len(p) == 1 && p[0].Name != pooled.Name
	})
	// Back to zero: the function's Pod goes after its idle timeout; the
	// pool's stays.
	eventually(t, 60*time.Second, "the function's Pod deleted after its idle timeout", func() bool {
		for _, p := range k.pods(t, ns) {
			if p.Name == pooled.Name {
				return false
			}
		}
		return true
	})
	if n := len(k.poolPods(t, ns, false)); n != 1 {
		t.Errorf("%d pool Pods after the function scaled to zero, want 1", n)
	}

	// A function asking for resources gets a worker Pod of its own: a
	// generic Pod carries none.
	const own = "ksent-cpu"
	s.deploy(fmt.Sprintf("name: %s\nruntime: onnx\ntask: text-classification\nmodel: %s\nresources: {cpu: 0.5}\nscaling: {min: 0, max: 1, idle_timeout: 3s}\n", own, model))
	start = time.Now()
	fresh := s.call("POST", "/v1/run/"+own, `{"text": "I love this movie!"}`)
	coldFresh := time.Since(start)
	if fresh.status != 200 {
		t.Fatalf("cold call of %s: %d %s", own, fresh.status, fresh.body)
	}
	if ins := s.instances(own); len(ins) != 1 || slices.Contains(ins[0].PhaseOrder, "pool_acquired") {
		t.Errorf("instances of %s %+v: want one started fresh, not from the pool", own, ins)
	}
	if created, _ := rec.names("ember-" + own); len(created) != 1 {
		t.Errorf("Pods %v created for %s, want 1 of its own", created, own)
	}
	t.Logf("cold first response on Kubernetes: from the pooled Pod %v, fresh worker Pod %v (%.1fx)",
		coldPool.Round(time.Millisecond), coldFresh.Round(time.Millisecond), float64(coldFresh)/float64(coldPool))
}
