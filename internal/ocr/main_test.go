package ocr_test

import (
	"os"
	"testing"

	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// TestMain gives the package's tests one model cache for this run.
func TestMain(m *testing.M) { os.Exit(ocrtest.Main(m)) }
