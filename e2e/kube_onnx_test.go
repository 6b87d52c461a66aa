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
	"syscall"
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

// sentimentModels writes a generated text-classification model into a
// models directory of the test's own (the --kube-models host path) and
// returns both.
func sentimentModels(t *testing.T) (dir, model string) {
	t.Helper()
	dir = t.TempDir()
	c := bertgen.Small()
	c.TokenTypes, c.Labels = false, []string{"NEGATIVE", "POSITIVE"}
	model = filepath.Join(dir, "sentiment")
	if err := bertgen.Write(model, c, bertgen.Options{MaxLength: 512}); err != nil {
		t.Fatal(err)
	}
	// The worker image may run as a non-root user: the models are
	// world-readable, as on a shared models volume.
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, model
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
	modelsDir, model := sentimentModels(t)
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

// TestKubeONNXPoolFailover: the onnx pool under roles on real Pods. The
// leader controller keeps the pool's generic Pod; a call through a
// gateway specialises it into the function's Pod and the pool refills.
// Then the leader is SIGKILLed: the standby takes the Lease, adopts the
// specialised Pod as the function's instance (it carries the function's
// labels), deletes the old leader's waiting pool Pod as a leftover, starts
// its own, and the function is served warm by the adopted Pod with no
// Pod created for it.
func TestKubeONNXPoolFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime in Pods")
	}
	k := kubeTest(t)
	dsn := postgresDSN(t)
	ns := k.namespace(t)
	image := k.workerImage(t)
	modelsDir, model := sentimentModels(t)
	rec := k.recordPods(t, ns)
	token, env := clusterEnv(dsn)
	kube := []string{"--kubeconfig", k.kubeconfig, "--kube-namespace", ns, "--lease-name", "ember-controller",
		"--backend", "kubernetes", "--kube-network", "host", "--kube-worker-image", image, "--kube-models", modelsDir}
	ctl := append([]string{"--onnx-pool", "1", "--onnx-loaded", "0",
		"--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"}, kube...)
	c1 := startController(t, "ctl-1", env, ctl...)
	eventually(t, 30*time.Second, "ctl-1 leads", func() bool { return c1.leads(token) })
	c2 := startController(t, "ctl-2", env, ctl...)
	g := startRole(t, "gateway", "", env, kube...)

	const name = "ksent"
	g.deploy(fmt.Sprintf("name: %s\nruntime: onnx\ntask: text-classification\nmodel: %s\nscaling: {min: 0, max: 1, idle_timeout: 120s}\n", name, model))
	// Ready as the leader sees it (its own probe of the Pod, in the
	// leader's /metrics), not only Running: a call between the two gets a
	// fresh Pod, not the pool's.
	eventually(t, 3*time.Minute, "the leader's pooled worker Pod ready", func() bool {
		return len(k.poolPods(t, ns, true)) == 1 && poolReadyIn(c1.metrics(t, g.key)) >= 1
	})
	first := k.poolPods(t, ns, true)[0].Name
	if r := g.call("POST", "/v1/run/"+name, `{"text": "I love this movie!"}`); r.status != 200 {
		t.Fatalf("cold call through the gateway: %d %s", r.status, r.body)
	}
	ins := g.instances(name)
	if len(ins) != 1 || !slices.Contains(ins[0].PhaseOrder, "pool_acquired") {
		t.Fatalf("instances through the gateway %+v: want one, from the pool", ins)
	}
	var waiting string
	eventually(t, 3*time.Minute, "the pool refilled", func() bool {
		p := k.poolPods(t, ns, true)
		if len(p) == 1 && p[0].Name != first {
			waiting = p[0].Name
			return true
		}
		return false
	})

	killed := time.Now()
	c1.cmd.Process.Signal(syscall.SIGKILL)
	<-c1.done
	eventually(t, 15*time.Second, "ctl-2 leads", func() bool { return c2.leads(token) })
	eventually(t, 60*time.Second, "the old leader's waiting pool Pod deleted and a new one running", func() bool {
		p := k.poolPods(t, ns, true)
		_, live := rec.names(waiting)
		return len(live) == 0 && len(p) == 1 && p[0].Name != waiting && p[0].Name != first
	})
	r := g.call("POST", "/v1/run/"+name, `{"text": "still here"}`)
	if r.status != 200 || r.header.Get(api.HeaderColdStart) == "true" {
		t.Fatalf("call after the takeover: %d cold=%q %s", r.status, r.header.Get(api.HeaderColdStart), r.body)
	}
	after := g.instances(name)
	if len(after) != 1 || after[0].ID != ins[0].ID {
		t.Errorf("instances after the takeover %+v, want the adopted %s", after, ins[0].ID)
	}
	if _, live := rec.names(first); len(live) != 1 {
		t.Errorf("the specialised Pod %s is gone after the takeover; want it adopted", first)
	}
	if created, _ := rec.names("ember-" + name); len(created) != 0 {
		t.Errorf("Pods %v created for the function, want none (its Pod came from the pool and was adopted)", created)
	}
	t.Logf("leader SIGKILLed: ctl-2 adopted the specialised Pod %s, replaced the waiting pool Pod %s, served warm %s after the kill",
		first, waiting, time.Since(killed).Round(time.Millisecond))
}
