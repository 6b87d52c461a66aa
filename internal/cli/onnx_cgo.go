//go:build cgo

package cli

import (
	"context"
	"io"

	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/worker"
)

// The built-in ONNX runtime (onnxruntime_go) needs cgo; onnx_nocgo.go
// stands in without it.

func runONNXWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return worker.RunONNX(ctx, args, stdout, stderr)
}

func sampleImage(text string) ([]byte, error) { return ocr.SampleImage(text) }
