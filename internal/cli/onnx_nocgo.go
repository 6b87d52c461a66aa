//go:build !cgo

package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ember-run/ember/internal/models"
)

// Without cgo there is no ONNX Runtime binding: an onnx function's worker
// exits at once with the reason, which its start error and logs show.

func runONNXWorker(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, models.ErrNoONNX)
	return 2
}

func sampleImage(string) ([]byte, error) { return nil, models.ErrNoONNX }
