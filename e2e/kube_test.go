package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The Kubernetes tests run on a real cluster (etcd, kube-apiserver,
// controller-manager, scheduler, a kubelet with containerd) that
// scripts/kube-cluster.sh starts; they find it through
// EMBER_TEST_KUBECONFIG and import their images through the containerd
// socket in EMBER_TEST_CONTAINERD (both printed by the script's env).
const kubeSkip = "no Kubernetes test cluster: scripts/kube-cluster.sh start /tmp/ember-kube, then " +
	`eval "$(scripts/kube-cluster.sh env /tmp/ember-kube)" (exports EMBER_TEST_KUBECONFIG and EMBER_TEST_CONTAINERD)`

type kubeCluster struct {
	kubeconfig string
	containerd string
	cs         kubernetes.Interface
}

func kubeTest(t *testing.T) *kubeCluster {
	t.Helper()
	kc, sock := os.Getenv("EMBER_TEST_KUBECONFIG"), os.Getenv("EMBER_TEST_CONTAINERD")
	if kc == "" || sock == "" {
		t.Skip(kubeSkip)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatalf("EMBER_TEST_KUBECONFIG=%s: %v", kc, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeCluster{kubeconfig: kc, containerd: sock, cs: cs}
}

// namespace creates a namespace of the test's own and deletes it (and
// waits for its Pods to be gone: host-network Pods hold host ports) when
// the test ends.
func (k *kubeCluster) namespace(t *testing.T) string {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	name = strings.NewReplacer("/", "-", "_", "-").Replace(name)
	if len(name) > 40 {
		name = name[:40]
	}
	name = "e2e-" + name + "-" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		k.cs.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		eventually(t, 60*time.Second, "the test's Pods deleted", func() bool {
			pods, err := k.cs.CoreV1().Pods(name).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0
		})
		if err := k.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// pods lists the namespace's Pods as the API server has them.
func (k *kubeCluster) pods(t *testing.T, ns string) []corev1.Pod {
	t.Helper()
	list, err := k.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods in %s: %v", ns, err)
	}
	return list.Items
}

var kubeSimImage builtOnce

// simImage builds examples/sim static, writes it as an OCI image and
// imports it into the cluster's containerd, once per test binary. The tag
// is the binary's digest, so concurrent runs of different checkouts on one
// cluster never replace each other's image.
func (k *kubeCluster) simImage(t *testing.T) string {
	t.Helper()
	return kubeSimImage.get(t, "sim image", func() (string, error) {
		return importImage(k.containerd, "ember-sim", "../examples/sim")
	})
}

// importImage builds pkg with CGO_ENABLED=0 and imports it, as the image's
// only file and entrypoint, named repo:<digest prefix>.
func importImage(sock, repo, pkg string) (string, error) {
	dir, err := os.MkdirTemp("", "ember-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	name := repo + ":" + hex.EncodeToString(sum[:6])
	entry := "/" + filepath.Base(pkg)
	tool := exec.Command("go", "run", "../scripts/ociimage", "-name", name, "-add", bin+":"+entry+":0755",
		"-entrypoint", entry, "-o", filepath.Join(dir, "image.tar"), "-containerd", sock)
	if out, err := tool.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ociimage %s: %v\n%s", name, err, out)
	}
	return name, nil
}

// freePort is a free port on 127.0.0.1 for a host-network Pod.
func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	var port int
	fmt.Sscan(p, &port)
	return port
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestKubeHarnessPod proves the test node: a host-network Pod of a locally
// built image (the sim) is scheduled onto the real kubelet, started by
// containerd, passes the kubelet's readiness probe and answers on the host.
func TestKubeHarnessPod(t *testing.T) {
	k := kubeTest(t)
	ns := k.namespace(t)
	image := k.simImage(t)
	port := freePort(t)
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sim"},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers: []corev1.Container{{
				Name:            "sim",
				Image:           image,
				ImagePullPolicy: corev1.PullNever, // the image exists only in the node's containerd
				// The sim listens on loopback; the kubelet probes it there
				// (the node's IP is the host's, not 127.0.0.1).
				Args: []string{"--port", fmt.Sprint(port)},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Path: "/health", Port: intstr.FromInt32(int32(port))}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
	start := time.Now()
	if _, err := k.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	var got *corev1.Pod
	eventually(t, 60*time.Second, "the sim Pod Ready", func() bool {
		p, err := k.cs.CoreV1().Pods(ns).Get(ctx, "sim", metav1.GetOptions{})
		got = p
		return err == nil && podReady(p)
	})
	t.Logf("pod created -> Ready in %v (node %s, pod IP %s)", time.Since(start).Round(time.Millisecond), got.Spec.NodeName, got.Status.PodIP)
	if got.Spec.NodeName == "" {
		t.Errorf("Ready pod has no node: the scheduler did not bind it")
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
	if err != nil {
		t.Fatalf("the Pod's server on the host: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /health on the Pod = %d, want 200", resp.StatusCode)
	}
}

// podRecorder watches a namespace's Pods from before the test acts, so the
// test counts the Pods Kubernetes had, not what Ember says it ran.
type podRecorder struct {
	mu      sync.Mutex
	created map[string]bool // every Pod name ever seen
	live    map[string]bool
	maxLive int
	stopped bool // the test stopped the watch: its closing error is expected
}

func (k *kubeCluster) recordPods(t *testing.T, ns string) *podRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := k.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("watch pods in %s: %v", ns, err)
	}
	r := &podRecorder{created: map[string]bool{}, live: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			r.mu.Lock()
			stopped := r.stopped
			r.mu.Unlock()
			if !ok && !stopped {
				t.Errorf("pod watch: %s %v: the Pod count would be incomplete", ev.Type, ev.Object)
			}
			if !ok {
				continue
			}
			r.mu.Lock()
			switch ev.Type {
			case "ADDED", "MODIFIED":
				r.created[p.Name] = true
				r.live[p.Name] = true
			case "DELETED":
				delete(r.live, p.Name)
			}
			r.maxLive = max(r.maxLive, len(r.live))
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		r.mu.Lock()
		r.stopped = true
		r.mu.Unlock()
		w.Stop()
		cancel()
		<-done
	})
	return r
}

func (r *podRecorder) counts() (created, maxLive int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.created), r.maxLive
}

// TestKubeScaleFromZero runs the real ember serve on the Kubernetes backend
// (host network, as this test node has only a loopback CNI): a function at
// min 0 gets a Pod on its first call, which is answered through it, and
// after its idle timeout the Pod is deleted. Pods are counted by the API
// server (a watch and lists), never by Ember's own view.
func TestKubeScaleFromZero(t *testing.T) {
	k := kubeTest(t)
	ns := k.namespace(t)
	image := k.simImage(t)
	rec := k.recordPods(t, ns)
	s := startServer(t, "", "--backend", "kubernetes", "--kube-network", "host",
		"--kubeconfig", k.kubeconfig, "--kube-namespace", ns)
	const name = "kzero"
	s.deploy(fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0, SIM_GREETING: hello}\nscaling: {min: 0, max: 1, idle_timeout: 2s}\n", name, image))
	if pods := k.pods(t, ns); len(pods) != 0 {
		t.Fatalf("%d Pods before any call, want 0 (scale from zero)", len(pods))
	}

	start := time.Now()
	first := s.call("POST", "/v1/run/"+name+"/predict", `{"echo":"hi"}`)
	if first.status != 200 || !strings.Contains(string(first.body), `"hi"`) {
		t.Fatalf("first call from zero = %d %s", first.status, first.body)
	}
	t.Logf("first call from zero answered in %v", time.Since(start).Round(time.Millisecond))
	pods := k.pods(t, ns)
	if len(pods) != 1 {
		t.Fatalf("%d Pods after the first call, want 1", len(pods))
	}
	p := pods[0]
	if p.Labels["app.kubernetes.io/managed-by"] != "ember" || !p.Spec.HostNetwork || p.Spec.Containers[0].Image != image {
		t.Errorf("Pod %s: labels %v, hostNetwork %v, image %q; want managed-by ember, host network, %s",
			p.Name, p.Labels, p.Spec.HostNetwork, p.Spec.Containers[0].Image, image)
	}
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("Pod %s phase %s after it answered, want Running", p.Name, p.Status.Phase)
	}
	// The function's env reaches the Pod through a Secret, never as a
	// plain value in the Pod spec.
	if n := len(k.emberSecrets(t, ns)); n != 1 {
		t.Errorf("%d Ember Secrets while the Pod runs, want 1 (the function's env)", n)
	}
	for _, e := range p.Spec.Containers[0].Env {
		if e.Name == "SIM_GREETING" && e.Value != "" {
			t.Errorf("SIM_GREETING is a plain value in the Pod spec, want a secretKeyRef")
		}
	}
	if warm := s.call("POST", "/v1/run/"+name+"/predict", `{"echo":"again"}`); warm.status != 200 {
		t.Fatalf("warm call = %d %s", warm.status, warm.body)
	}

	eventually(t, 60*time.Second, "the Pod deleted after the 2s idle timeout", func() bool {
		return len(k.pods(t, ns)) == 0
	})
	if created, maxLive := rec.counts(); created != 1 || maxLive != 1 {
		t.Errorf("the API server saw %d Pods created, at most %d at once; want 1 and 1", created, maxLive)
	}
	eventually(t, 30*time.Second, "the Pod's Secret deleted", func() bool { return len(k.emberSecrets(t, ns)) == 0 })
}

func (k *kubeCluster) emberSecrets(t *testing.T, ns string) []corev1.Secret {
	t.Helper()
	list, err := k.cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=ember"})
	if err != nil {
		t.Fatalf("list secrets in %s: %v", ns, err)
	}
	return list.Items
}
