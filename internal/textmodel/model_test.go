package textmodel

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

// initRuntime loads ONNX Runtime from $EMBER_ORT_LIB or pulls it into
// $EMBER_CACHE_DIR (else a cache of this test run).
func initRuntime(t testing.TB) {
	t.Helper()
	if ort.IsInitialized() {
		return
	}
	cache := os.Getenv("EMBER_CACHE_DIR")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "ember-textmodel-test-cache")
	}
	os.Setenv("ORT_DISABLE_TELEMETRY", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var progress strings.Builder
	lib, err := (&models.Client{}).RuntimeLibrary(ctx, cache, os.Getenv("EMBER_ORT_LIB"), &progress)
	if err != nil {
		t.Fatalf("onnx runtime: %v\n%s", err, progress.String())
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		t.Fatal(err)
	}
}

var labels3 = []string{"NEGATIVE", "POSITIVE", "NEUTRAL"}

func genModel(t *testing.T, c bertgen.Config, o bertgen.Options) string {
	t.Helper()
	dir := t.TempDir()
	if err := bertgen.Write(dir, c, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadModel(t *testing.T, dir string, o Options) *Model {
	t.Helper()
	m, err := Load(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Warmup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// directRun runs the model file on ONNX Runtime with the reference ids
// (Hugging Face's tokenizer's, fixed padding 128) and returns the output.
func directRun(t *testing.T, dir, output string, cases []refCase, tokenTypes bool) ([]float32, []int64) {
	t.Helper()
	n, seq := len(cases), len(cases[0].IDs)
	ids, mask := make([]int64, 0, n*seq), make([]int64, 0, n*seq)
	for _, c := range cases {
		for j := range c.IDs {
			ids, mask = append(ids, int64(c.IDs[j])), append(mask, int64(c.Mask[j]))
		}
	}
	names := []string{"input_ids", "attention_mask"}
	if tokenTypes {
		names = append(names, "token_type_ids")
	}
	s, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, "model.onnx"), names, []string{output}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	shape := ort.NewShape(int64(n), int64(seq))
	var in []ort.Value
	for _, d := range [][]int64{ids, mask, make([]int64, n*seq)}[:len(names)] {
		v, err := ort.NewTensor(shape, d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in = append(in, v)
	}
	out := []ort.Value{nil}
	if err := s.Run(in, out); err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	ten := out[0].(*ort.Tensor[float32])
	return append([]float32(nil), ten.GetData()...), ten.GetShape()
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestClassifyMatchesDirectRun: Ember's tokenizer + session + softmax give
// the probabilities a direct ONNX Runtime run of Hugging Face's ids gives,
// labelled by config.json's id2label; for the float graph and for its
// int8 quantised copies: QDQ (DequantizeLinear → MatMul),
// quantize_dynamic's (DynamicQuantizeLinear → MatMulInteger) and
// quantize_static's QOperator format (QuantizeLinear → QLinearMatMul →
// DequantizeLinear). The quantised copies, having the float graph's
// weights, must also stay near its probabilities.
func TestClassifyMatchesDirectRun(t *testing.T) {
	initRuntime(t)
	cases := loadReference(t)
	texts := make([]string, len(cases))
	for i, c := range cases {
		texts[i] = c.Text
	}
	texts[len(texts)-1] = strings.Repeat("long ", 1000) // truncated, not refused
	cases[len(cases)-1] = refCase{Text: texts[len(texts)-1]}
	var float [][]Label
	for _, quant := range []string{"float", "qdq", "dynamic", "qlinear"} {
		c := bertgen.Small()
		c.Labels, c.QDQ, c.DynamicInt8, c.QLinear = labels3, quant == "qdq", quant == "dynamic", quant == "qlinear"
		dir := genModel(t, c, bertgen.Options{})
		m := loadModel(t, dir, Options{Task: TaskClassification})
		if m.MaxLength() != 128 {
			t.Fatalf("max length %d, want tokenizer.json's 128", m.MaxLength())
		}
		// Reference ids for the last (long) text: Ember's own, checked
		// against Hugging Face's truncation in the tokenizer test.
		e := m.Encode(texts[len(texts)-1:])[0]
		cases[len(cases)-1].IDs, cases[len(cases)-1].Mask = e.IDs, e.Mask
		got, usage, err := m.Classify(context.Background(), texts, 3)
		if err != nil {
			t.Fatal(err)
		}
		if usage.Truncated != 1 {
			t.Errorf("%s: truncated %d texts, want 1", quant, usage.Truncated)
		}
		if quant == "float" {
			float = got
		}
		for i := range got {
			for _, l := range got[i] {
				j := slices.IndexFunc(float[i], func(f Label) bool { return f.Label == l.Label })
				if !near(l.Score, float[i][j].Score, quantTolerance) {
					t.Errorf("%s %q: %s = %.4f, float graph %.4f (tolerance %g)", quant, texts[i], l.Label, l.Score, float[i][j].Score, quantTolerance)
				}
			}
		}
		logits, shape := directRun(t, dir, "logits", cases, true)
		if shape[0] != int64(len(cases)) || shape[1] != 3 {
			t.Fatalf("direct run shape %v", shape)
		}
		for i := range cases {
			want := softmax(logits[i*3 : i*3+3])
			if len(got[i]) != 3 {
				t.Fatalf("top_k 3 gave %d labels", len(got[i]))
			}
			for _, l := range got[i] {
				j := indexOf(labels3, l.Label)
				if j < 0 || !near(l.Score, want[j], 1e-5) {
					t.Errorf("%s %q: %s = %.6f, direct run %v", quant, cases[i].Text, l.Label, l.Score, want)
				}
			}
			if got[i][0].Score < got[i][1].Score || got[i][1].Score < got[i][2].Score {
				t.Errorf("labels not best first: %v", got[i])
			}
		}
	}
}

// quantTolerance bounds how far an int8 graph's probabilities may drift
// from the float graph's with the same weights. The small random model's
// three probabilities spread only ~0.013 around 1/3, so the bound is a
// tenth of that spread (measured drift: ≤ 0.0001 QDQ and dynamic, ≤ 0.0004
// QLinearMatMul with its fixed activation scales).
const quantTolerance = 0.001

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestEmbedMatchesDirectRun: mean pooling over the attention mask and L2
// normalisation of a direct run's last_hidden_state; CLS pooling takes the
// first token.
func TestEmbedMatchesDirectRun(t *testing.T) {
	initRuntime(t)
	cases := loadReference(t)[:5]
	texts := make([]string, len(cases))
	for i, c := range cases {
		texts[i] = c.Text
	}
	c := bertgen.Small()
	c.TokenTypes = false // DistilBERT's inputs
	dir := genModel(t, c, bertgen.Options{})
	hidden, shape := directRun(t, dir, "last_hidden_state", cases, false)
	seq, h := int(shape[1]), int(shape[2])
	// The direct run pads to tokenizer.json's fixed 128; PadLongest pads
	// to the longest text and must give the same embeddings.
	for _, v := range []struct {
		mode    string
		longest bool
	}{{PoolMean, false}, {PoolCLS, false}, {PoolMean, true}} {
		mode := v.mode
		m := loadModel(t, dir, Options{Task: TaskEmbeddings, Pooling: mode, PadLongest: v.longest})
		if e := m.Encode(texts[:1])[0]; v.longest != (len(e.IDs) < 128) {
			t.Fatalf("PadLongest %v: encoding of %d tokens", v.longest, len(e.IDs))
		}
		got, usage, err := m.Embed(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		wantTokens := 0
		for i, c := range cases {
			mask := make([]int64, seq)
			for j, v := range c.Mask {
				mask[j] = int64(v)
				wantTokens += int(v)
			}
			want := pool(hidden[i*seq*h:(i+1)*seq*h], mask, h, mode)
			normalize(want)
			var norm float64
			for k := range want {
				norm += float64(got[i][k]) * float64(got[i][k])
				if !near(float64(got[i][k]), float64(want[k]), 1e-5) {
					t.Fatalf("%s %q [%d]: %v, direct %v", mode, c.Text, k, got[i][k], want[k])
				}
			}
			if !near(norm, 1, 1e-5) {
				t.Errorf("%s: |v|² = %v, want 1", mode, norm)
			}
		}
		if usage.Tokens != wantTokens {
			t.Errorf("usage.Tokens = %d, want %d (the real tokens)", usage.Tokens, wantTokens)
		}
	}
}

// TestBatchedEqualsUnbatched: concurrent calls to a batching model give
// the results the unbatched model gives each call alone, and they ran as
// one ONNX Runtime run (max_size reached, so the long max_delay is not
// waited for).
func TestBatchedEqualsUnbatched(t *testing.T) {
	initRuntime(t)
	c := bertgen.Small()
	c.Labels = labels3
	dir := genModel(t, c, bertgen.Options{MaxLength: 512}) // padding off: pad to the batch's longest
	plain := loadModel(t, dir, Options{Task: TaskClassification})
	const n = 8
	batched := loadModel(t, dir, Options{Task: TaskClassification, BatchMaxSize: n, BatchMaxDelay: time.Hour})
	cases := loadReference(t)
	runs0, _ := batched.Runs()
	var wg sync.WaitGroup
	got := make([][]Label, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := batched.Classify(context.Background(), []string{cases[i].Text}, 3)
			if err == nil {
				got[i] = r[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if runs, rows := batched.Runs(); runs-runs0 != 1 || rows != n+1 {
		t.Errorf("%d calls made %d runs (%d rows), want 1 run", n, runs-runs0, rows-1)
	}
	for i := range n {
		want, _, err := plain.Classify(context.Background(), []string{cases[i].Text}, 3)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want[0] {
			if want[0][j].Label != got[i][j].Label || !near(want[0][j].Score, got[i][j].Score, 1e-6) {
				t.Errorf("%q: batched %v, alone %v", cases[i].Text, got[i], want[0])
			}
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	initRuntime(t)
	c := bertgen.Small()
	c.Labels = labels3
	dir := genModel(t, c, bertgen.Options{})
	if _, err := Load(dir, Options{Task: TaskClassification, MaxLength: 1000}); err == nil || !strings.Contains(err.Error(), "max_length 1000 exceeds the model's 128") {
		t.Errorf("max_length above the model's: %v", err)
	}
	os.Remove(filepath.Join(dir, "config.json"))
	if _, err := Load(dir, Options{Task: TaskClassification}); !errors.Is(err, ErrModelDir) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("no config.json: %v", err)
	}
	os.Remove(filepath.Join(dir, "model.onnx"))
	if _, err := Load(dir, Options{Task: TaskEmbeddings}); !errors.Is(err, ErrModelDir) || !strings.Contains(err.Error(), "onnx/model.onnx") {
		t.Errorf("no model: %v", err)
	}
}

func TestCheckTexts(t *testing.T) {
	for _, tc := range []struct {
		field string
		texts []string
		want  string
	}{
		{"text", []string{""}, "text: is empty"},
		{"texts", []string{"a", ""}, "texts[1]: is empty"},
		{"texts", nil, "texts: no texts given"},
		{"text", []string{strings.Repeat("a", MaxTextBytes+1)}, "text: too long: 1048577 bytes > limit 1048576"},
		{"texts", make([]string, MaxTexts+1), "texts: 257 texts > limit 256"},
	} {
		err := CheckTexts(tc.field, tc.texts)
		var ie *InputError
		if !errors.As(err, &ie) || err.Error() != tc.want {
			t.Errorf("%s %d texts: %v, want %q", tc.field, len(tc.texts), err, tc.want)
		}
	}
	if err := CheckTexts("text", []string{"fine"}); err != nil {
		t.Error(err)
	}
}
