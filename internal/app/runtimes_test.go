package app

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/spec"
)

// Deploy validation is the spec's own checks, then the chosen driver's: a
// spec the spec package accepts can still be one its runtime cannot run.
func TestRuntimesValidate(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc := process.New(logger, process.Options{})
	rt := newRegistry(proc, onnx.New(proc, logger, onnx.Options{}))
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	rt.hardware = func(class string) bool { return len(cat.ForHardware(class)) > 0 }
	tests := []struct {
		name, doc string
		want      string // the whole error; "" = valid
	}{
		{"process", "name: a\ncommand: [sh]\nresources: {cpu: 2, memory: 1Gi}", ""},
		{"onnx", "name: a\nruntime: onnx\ntask: ocr\nmodel: ./m", ""},
		{"process image", "name: a\ncommand: [sh]\nimage: ghcr.io/acme/m:1",
			`invalid spec for "a": image: the process runtime runs host commands; use runtime: container for images`},
		{"process volumes and no command", "name: a\nvolumes: [{name: m, mount_path: /m}]",
			`invalid spec for "a": command: required for runtime "process" (argv of the instance, e.g. ["./server", "--port", "${PORT}"]); volumes: the process runtime runs in the host's filesystem (see workdir); use runtime: container for volumes`},
		{"onnx task", "name: a\nruntime: onnx\ntask: chat\nmodel: ./m",
			`invalid spec for "a": task: unsupported task "chat" (supported: ocr, text-classification, embeddings)`},
		{"known hardware", "name: a\ncommand: [sh]\nresources: {gpu: {type: A100-40GB, count: 1}}", ""},
		{"unknown hardware", "name: a\ncommand: [sh]\nresources: {gpu: {type: h900, count: 1}}",
			`invalid spec for "a": resources.gpu.type: unknown hardware class "h900": the price catalogue has no offer for it (ember prices lists the known ones; add one in <data-dir>/prices.yaml)`},
		{"unknown runtime", "name: a\nruntime: container\nimage: acme/m:1",
			`invalid spec for "a": runtime: unknown runtime "container" (supported: onnx, process)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := spec.Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("the spec itself must pass: %v", err)
			}
			err = rt.Validate(f)
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			var ve *spec.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v (%T), want a *spec.ValidationError", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Validate =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
