package app

import (
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/kube"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/spec"
)

// With --backend kubernetes every runtime runs as Pods: deploy says what a
// Pod needs that a spec lacks (an image for process functions, the worker
// image for onnx ones) and keeps the onnx driver's own checks.
func TestKubeRuntimesValidate(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc := process.New(logger, process.Options{})
	on := onnx.New(proc, logger, onnx.Options{})
	for _, worker := range []string{"", "ghcr.io/ember-run/ember-onnx:dev"} {
		kd, err := kube.New(logger, kube.Options{Client: fake.NewClientset(), WorkerImage: worker})
		if err != nil {
			t.Fatal(err)
		}
		rt := kubeRegistry(kd, proc, on, nil)
		tests := []struct {
			name, doc string
			want      string // the whole error; "" = valid
		}{
			{"container", "name: a\nruntime: container\nimage: acme/m:1", ""},
			{"process with image", "name: a\ncommand: [/srv/server]\nimage: acme/m:1", ""},
			{"process without image", "name: a\ncommand: [sh]",
				`invalid spec for "a": image: runtime process needs image: on --backend kubernetes (an image holding the command, e.g. ghcr.io/acme/server:1.0); a Pod cannot run a host command`},
		}
		if worker == "" {
			tests = append(tests, struct{ name, doc, want string }{"onnx without worker image", "name: a\nruntime: onnx\ntask: ocr\nmodel: npm:m@1",
				`invalid spec for "a": runtime: onnx functions on --backend kubernetes run Ember's own image in worker mode: start the server with --kube-worker-image (e.g. ghcr.io/ember-run/ember-onnx:<version>)`})
		} else {
			tests = append(tests, struct{ name, doc, want string }{"onnx", "name: a\nruntime: onnx\ntask: ocr\nmodel: npm:m@1", ""},
				struct{ name, doc, want string }{"onnx task", "name: a\nruntime: onnx\ntask: chat\nmodel: npm:m@1",
					`invalid spec for "a": task: unsupported task "chat" (supported: ocr, text-classification, embeddings)`})
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f, err := spec.Parse([]byte(tt.doc))
				if err != nil {
					t.Fatalf("the spec itself must pass: %v", err)
				}
				got := ""
				if err := rt.Validate(f); err != nil {
					got = err.Error()
				}
				if got != tt.want {
					t.Errorf("Validate =\n%s\nwant\n%s", got, tt.want)
				}
			})
		}
		kd.Close()
	}
}

// Pods outlive the process that started them: on the Kubernetes backend a
// controller leaves them for the next leader (adopts; the driver's Close
// deletes nothing), and only serve deletes what an earlier run left
// (cleanupKube). The local backend's instances die with their server, so a
// controller on it stops them.
func TestKubePodsOutliveRoles(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc := process.New(logger, process.Options{})
	on := onnx.New(proc, logger, onnx.Options{})
	if newRegistry(proc, on).adopts() {
		t.Error("the local backend adopts: a controller on it would leak its instances")
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{kube.LabelManagedBy: kube.ManagedBy, driver.LabelFunction: "fn",
				driver.LabelVersion: "1", driver.LabelInstance: name}}}
	}
	cs := fake.NewClientset(pod("ember-fn-a"))
	kd, err := kube.New(logger, kube.Options{Client: cs})
	if err != nil {
		t.Fatal(err)
	}
	rt := kubeRegistry(kd, proc, on, nil)
	if !rt.adopts() {
		t.Fatal("the kube backend does not adopt: a controller would stop its Pods on exit")
	}
	listed, err := rt.List(t.Context())
	if err != nil || len(listed) != 1 {
		t.Fatalf("List = %v, %v; want the one Ember Pod (the labels above must be Ember's)", listed, err)
	}
	rt.closeKube() // what a controller does on exit
	if pods, _ := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{}); len(pods.Items) != 1 {
		t.Fatalf("%d Pods after the driver closed, want 1 left running", len(pods.Items))
	}
	rt.cleanupKube(logger) // what serve does at start
	if pods, _ := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Fatalf("%d Pods after serve's cleanup, want 0", len(pods.Items))
	}
}
