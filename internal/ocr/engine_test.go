package ocr_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/ocr"
	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// loadEngine loads the real PaddleOCR models on the real runtime.
func loadEngine(t testing.TB, opts ocr.Options) *ocr.Engine {
	t.Helper()
	lib, dir := ocrtest.Assets(t)
	if err := ocr.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	e, err := ocr.Load(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestRecognizeRendered(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	e := loadEngine(t, ocr.Options{Classify: true})
	tests := []struct {
		name  string
		image func(t *testing.T) []byte
		want  string
		// ignoreSpaces compares without spaces: in CJK-font text the
		// rendered word gaps are narrow and the model's space signal weak.
		ignoreSpaces bool
	}{
		{"english png", func(t *testing.T) []byte { return ocrtest.Hello(t, "png") }, "Hello Ember 2026", false},
		{"english jpeg", func(t *testing.T) []byte { return ocrtest.Hello(t, "jpg") }, "Hello Ember 2026", false},
		{"chinese", func(t *testing.T) []byte {
			return ocrtest.Render(t, "你好世界，欢迎使用", ocrtest.CJKFont(t), 600, 80, 36, 55, "png")
		}, "你好世界，欢迎使用", false},
		{"chinese and english", func(t *testing.T) []byte {
			return ocrtest.Render(t, "模型推理服务 Ember 2026", ocrtest.CJKFont(t), 700, 80, 36, 55, "png")
		}, "模型推理服务 Ember 2026", true},
		{"two lines", func(t *testing.T) []byte {
			return ocrtest.Render(t, "Serverless inference\nscales to zero", "", 700, 140, 36, 50, "png")
		}, "Serverless inference\nscales to zero", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ocr.Decode(tt.image(t))
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Recognize(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			got, want := res.Text, tt.want
			if tt.ignoreSpaces {
				got, want = strings.ReplaceAll(got, " ", ""), strings.ReplaceAll(want, " ", "")
			}
			if got != want {
				t.Errorf("text = %q, want %q (lines %+v)", res.Text, tt.want, res.Lines)
			}
			for _, l := range res.Lines {
				if l.Score < 0.5 || l.Score > 1 {
					t.Errorf("line %q score %v outside [0.5, 1]", l.Text, l.Score)
				}
			}
		})
	}
}

func TestOptimizedCache(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	lib, dir := ocrtest.Assets(t)
	if err := ocr.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	img, err := ocr.Decode(ocrtest.Hello(t, "png"))
	if err != nil {
		t.Fatal(err)
	}
	// By default the cache holds CPU-specific, fully optimised graphs where
	// the CPU can be identified (Linux: /proc/cpuinfo).
	full := "*.ext.onnx"
	if _, err := os.Stat("/proc/cpuinfo"); err == nil {
		full = "*.all.onnx"
	}
	tests := []struct {
		name     string
		portable bool
		want     string // glob of the two cached files
	}{
		{"default", false, full},
		{"portable", true, "*.ext.onnx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			// The first load writes the optimised models; the second starts
			// from them.
			for _, pass := range []string{"first", "cached"} {
				e, err := ocr.Load(dir, ocr.Options{OptimizedDir: cache, PortableCache: tt.portable})
				if err != nil {
					t.Fatalf("%s load: %v", pass, err)
				}
				res, err := e.Recognize(context.Background(), img)
				loaded := e.Stats().Files
				e.Close()
				if err != nil || res.Text != "Hello Ember 2026" {
					t.Errorf("%s load: text = %q, %v; want %q", pass, res.Text, err, "Hello Ember 2026")
				}
				files, _ := filepath.Glob(filepath.Join(cache, tt.want))
				all, _ := filepath.Glob(filepath.Join(cache, "*"))
				if len(files) != 2 || len(all) != 2 {
					t.Errorf("%s load: cache holds %v, want det and rec matching %s", pass, all, tt.want)
				}
				if pass == "cached" && !slices.Equal(loaded, files) {
					t.Errorf("cached load read %v, want the cached copies %v", loaded, files)
				}
			}
		})
	}
}

// TestLoadModes loads the real models in each way Load can build sessions
// (concurrently by default, one after another, read instead of mmap, with
// the classifier as a third session) and checks each engine reads the image.
func TestLoadModes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	lib, dir := ocrtest.Assets(t)
	if err := ocr.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	img, err := ocr.Decode(ocrtest.Hello(t, "png"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      ocr.Options
		wantFiles int
	}{
		{"concurrent mmap", ocr.Options{}, 2},
		{"serial with spinning", ocr.Options{SerialLoad: true, Spin: true}, 2},
		{"concurrent read", ocr.Options{LoadMode: ocr.LoadRead}, 2},
		{"concurrent with classifier", ocr.Options{Classify: true}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ocr.Load(dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if err := e.Warmup(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := e.Stats()
			if len(st.Files) != tt.wantFiles || st.Bytes <= 0 || st.Session <= 0 {
				t.Errorf("stats = %+v, want %d files, bytes and session time", st, tt.wantFiles)
			}
			res, err := e.Recognize(context.Background(), img)
			if err != nil || res.Text != "Hello Ember 2026" {
				t.Errorf("text = %q, %v; want %q", res.Text, err, "Hello Ember 2026")
			}
		})
	}
}

// TestLoadBadModel: when one of the concurrently built sessions fails, Load
// reports that file and returns no engine.
func TestLoadBadModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real runtime")
	}
	lib, dir := ocrtest.Assets(t)
	if err := ocr.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	files, err := ocr.FindModelFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	for name, src := range map[string]string{"rec.onnx": files.Rec, "keys.txt": files.Dict} {
		if err := os.Symlink(src, filepath.Join(bad, name)); err != nil {
			t.Fatal(err)
		}
	}
	det := filepath.Join(bad, "det.onnx")
	// A graph whose input x and output y our name parser finds, but with no
	// nodes, opset or IR version: ONNX Runtime refuses it.
	model := []byte{0x3a, 10, 0x5a, 3, 0x0a, 1, 'x', 0x62, 3, 0x0a, 1, 'y'}
	if err := os.WriteFile(det, model, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := ocr.Load(bad, ocr.Options{})
	if err == nil {
		e.Close()
		t.Fatal("Load of a corrupt detector succeeded")
	}
	if !strings.Contains(err.Error(), det) {
		t.Errorf("error %q does not name %s", err, det)
	}
}
