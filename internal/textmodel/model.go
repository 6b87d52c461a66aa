package textmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ember-run/ember/internal/ortcache"
)

// Tasks.
const (
	TaskClassification = "text-classification"
	TaskEmbeddings     = "embeddings"
)

// Pooling modes for embeddings.
const (
	PoolMean = "mean"
	PoolCLS  = "cls"
)

// Options configure a text model. The zero value uses the model
// directory's settings and no batching.
type Options struct {
	Task string
	// MaxLength lowers the truncation length (tokens, special ones
	// included) below the model's; 0 keeps the model's.
	MaxLength int
	// Pooling is "mean" or "cls" for embeddings ("" : config.json's
	// "pooling", else mean, as sentence-transformers exports use).
	Pooling string
	// Normalize scales embeddings to unit length (nil: config.json's
	// "normalize", else true).
	Normalize *bool
	// PadLongest pads each run to its longest text even where
	// tokenizer.json fixes the length (all-MiniLM-L6-v2's pads to 128):
	// the attention mask keeps the answers the same, for less work.
	PadLongest bool
	// Threads is ONNX Runtime's intra-op thread count (0: one per core).
	Threads int
	// OptimizedDir, if set, caches the graph after ONNX Runtime's level-"all"
	// optimisations for this CPU (the OCR engine's cache, internal/ortcache),
	// and later loads start from it with optimisation off. Where the CPU
	// cannot be identified the cache is skipped (a level-"all" graph is
	// valid on its CPU only). The worker leaves it off for text models: on
	// a DistilBERT-sized graph it made loads slower, not faster (session
	// creation there is weight handling, not graph rewriting; see
	// BenchmarkLoadDistilBERT and docs/onnx.md).
	OptimizedDir string
	// BatchMaxSize > 1 turns dynamic batching on: concurrent calls are
	// coalesced into one run of up to this many texts, waiting at most
	// BatchMaxDelay after the first.
	BatchMaxSize  int
	BatchMaxDelay time.Duration
}

// Limits on one call, so a request cannot hold an instance arbitrarily
// long.
const (
	MaxTexts     = 256     // texts in one call
	MaxTextBytes = 1 << 20 // bytes of one text, before truncation
)

// Label is one class and its probability.
type Label struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

// Model is a loaded text model. Its methods are safe for concurrent use.
type Model struct {
	task      string
	tok       *Tokenizer
	sess      *ort.DynamicAdvancedSession
	inputs    []string // graph inputs, in the session's order
	output    string
	labels    []string // classification: id2label in id order
	pooling   string
	normalize bool
	maxLen    int
	batch     *batcher
	runs      atomic.Int64
	rows      atomic.Int64
	stats     LoadStats
}

// LoadStats says where loading spent its time.
type LoadStats struct {
	Bytes   int64
	Read    time.Duration
	Session time.Duration
	File    string
}

// ErrModelDir is wrapped when a model directory lacks or has a bad file.
var ErrModelDir = errors.New("textmodel: model directory")

// modelConfig is the subset of a Hugging Face config.json read here.
type modelConfig struct {
	ID2Label     map[string]string `json:"id2label"`
	MaxPositions int               `json:"max_position_embeddings"`
	ProblemType  string            `json:"problem_type"`
	Pooling      string            `json:"pooling"`
	Normalize    *bool             `json:"normalize"`
}

// FindModelFile returns the ONNX graph of a Hugging Face export directory:
// model.onnx, else onnx/model.onnx (optimum's layout).
func FindModelFile(dir string) (string, error) {
	for _, p := range []string{"model.onnx", filepath.Join("onnx", "model.onnx")} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return filepath.Join(dir, p), nil
		}
	}
	return "", fmt.Errorf("%w %s: no model.onnx or onnx/model.onnx", ErrModelDir, dir)
}

// Load builds a model from dir. ONNX Runtime must be initialised.
func Load(dir string, o Options) (*Model, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("textmodel: onnx runtime not initialised")
	}
	if o.Task != TaskClassification && o.Task != TaskEmbeddings {
		return nil, fmt.Errorf("textmodel: task %q (supported: %s, %s)", o.Task, TaskClassification, TaskEmbeddings)
	}
	file, err := FindModelFile(dir)
	if err != nil {
		return nil, err
	}
	tok, err := LoadTokenizer(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelDir, err)
	}
	var cfg modelConfig
	switch b, err := os.ReadFile(filepath.Join(dir, "config.json")); {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("%w: config.json: %w", ErrModelDir, err)
		}
	case !errors.Is(err, os.ErrNotExist) || o.Task == TaskClassification:
		return nil, fmt.Errorf("%w: config.json (the labels, id2label): %w", ErrModelDir, err)
	}
	m := &Model{task: o.Task, tok: tok}

	// Max length: the tokenizer's truncation, else the model's positions,
	// lowered by the spec; never above the positions the model has.
	m.maxLen = tok.MaxLength
	if cfg.MaxPositions > 0 && (m.maxLen == 0 || m.maxLen > cfg.MaxPositions) {
		m.maxLen = cfg.MaxPositions
	}
	if m.maxLen == 0 {
		m.maxLen = 512
	}
	if o.MaxLength > m.maxLen {
		return nil, fmt.Errorf("textmodel: max_length %d exceeds the model's %d tokens", o.MaxLength, m.maxLen)
	}
	if o.MaxLength > 0 {
		m.maxLen = o.MaxLength
	}
	if tok.PadFixed > m.maxLen || (o.PadLongest && tok.PadFixed > 0) {
		// A fixed padding longer than what may be kept pads to the limit.
		t := *tok
		t.PadFixed = min(t.PadFixed, m.maxLen)
		if o.PadLongest {
			t.PadFixed = 0
		}
		m.tok = &t
	}

	switch o.Task {
	case TaskClassification:
		if len(cfg.ID2Label) == 0 {
			return nil, fmt.Errorf("%w: config.json has no id2label (the classifier's labels)", ErrModelDir)
		}
		m.labels = make([]string, len(cfg.ID2Label))
		for k, v := range cfg.ID2Label {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(m.labels) {
				return nil, fmt.Errorf("%w: config.json id2label: ids must be 0..%d (got %q)", ErrModelDir, len(m.labels)-1, k)
			}
			m.labels[i] = v
		}
	case TaskEmbeddings:
		m.pooling = o.Pooling
		if m.pooling == "" {
			m.pooling = cfg.Pooling
		}
		if m.pooling == "" {
			m.pooling = PoolMean
		}
		if m.pooling != PoolMean && m.pooling != PoolCLS {
			return nil, fmt.Errorf("textmodel: pooling %q (supported: mean, cls)", m.pooling)
		}
		m.normalize = true
		if cfg.Normalize != nil {
			m.normalize = *cfg.Normalize
		}
		if o.Normalize != nil {
			m.normalize = *o.Normalize
		}
	}

	t0 := time.Now()
	src, save := file, ""
	cpu := ""
	if o.OptimizedDir != "" {
		cpu = ortcache.CPUKey()
	}
	if cpu != "" {
		if src, save, err = ortcache.Paths(file, o.OptimizedDir, ort.GetVersion(), cpu); err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelDir, err)
	}
	m.stats = LoadStats{Bytes: int64(len(data)), Read: time.Since(t0), File: src}
	ins, outs, err := ioNames(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrModelDir, file, err)
	}
	for _, in := range ins {
		switch in {
		case "input_ids", "attention_mask", "token_type_ids":
		default:
			return nil, fmt.Errorf("%w: %s: graph input %q (supported: input_ids, attention_mask, token_type_ids)", ErrModelDir, file, in)
		}
	}
	if !contains(ins, "input_ids") {
		return nil, fmt.Errorf("%w: %s: graph has no input_ids input", ErrModelDir, file)
	}
	m.inputs = ins
	want := "logits"
	if o.Task == TaskEmbeddings {
		want = "last_hidden_state"
	}
	m.output = outs[0]
	if contains(outs, want) {
		m.output = want
	}

	t1 := time.Now()
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("textmodel: %w", err)
	}
	defer so.Destroy()
	if n := intraOpThreads(o, runtime.NumCPU()); n > 0 {
		if err := so.SetIntraOpNumThreads(n); err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
	}
	// Idle intra-op threads that spin steal the few cores a serverless
	// instance gets (as for OCR).
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, fmt.Errorf("textmodel: %w", err)
	}
	var tmp string
	switch {
	case save != "":
		// First load: optimise fully and have the runtime write the
		// result, published by rename once complete.
		tmp = save + ".tmp-" + strconv.Itoa(os.Getpid())
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
		if err := so.SetOptimizedModelFilePath(tmp); err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
	case src != file:
		// The cached copy is already fully optimised for this CPU.
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
	}
	if m.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, m.inputs, []string{m.output}, so); err != nil {
		if tmp != "" {
			os.Remove(tmp)
		}
		return nil, fmt.Errorf("textmodel: %s: %w", src, err)
	}
	if tmp != "" {
		if err := os.Rename(tmp, save); err != nil {
			os.Remove(tmp) // the cache is an optimisation; the session is fine
		}
	}
	m.stats.Session = time.Since(t1)
	if o.BatchMaxSize > 1 {
		delay := o.BatchMaxDelay
		if delay <= 0 {
			delay = DefaultBatchMaxDelay
		}
		m.batch = newBatcher(m.runRows, o.BatchMaxSize, delay)
	}
	return m, nil
}

// DefaultBatchMaxDelay is how long an open batch waits for more requests.
const DefaultBatchMaxDelay = 5 * time.Millisecond

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Task is the model's task.
func (m *Model) Task() string { return m.task }

// MaxLength is the truncation length in force.
func (m *Model) MaxLength() int { return m.maxLen }

// Labels are the classifier's labels in id order.
func (m *Model) Labels() []string { return m.labels }

// Stats says where loading spent its time.
func (m *Model) Stats() LoadStats { return m.stats }

// Runs is how many ONNX Runtime runs the model made, and Rows how many
// texts they held (Rows/Runs is the mean batch size).
func (m *Model) Runs() (runs, rows int64) { return m.runs.Load(), m.rows.Load() }

// Tokenizer is the model's tokenizer.
func (m *Model) Tokenizer() *Tokenizer { return m.tok }

// Close stops the batcher and releases the session.
func (m *Model) Close() error {
	if m.batch != nil {
		m.batch.close()
	}
	return m.sess.Destroy()
}

// InputError is a bad input, naming the field and the limit; callers map
// it to 400.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// CheckTexts enforces the per-call limits: field names the input
// ("text" or "texts"), so errors say which one.
func CheckTexts(field string, texts []string) error {
	if len(texts) == 0 {
		return &InputError{field, "no texts given"}
	}
	if len(texts) > MaxTexts {
		return &InputError{field, fmt.Sprintf("%d texts > limit %d", len(texts), MaxTexts)}
	}
	for i, t := range texts {
		name := field
		if field == "texts" || len(texts) > 1 {
			name = fmt.Sprintf("%s[%d]", field, i)
		}
		if t == "" {
			return &InputError{name, "is empty"}
		}
		if len(t) > MaxTextBytes {
			return &InputError{name, fmt.Sprintf("too long: %d bytes > limit %d", len(t), MaxTextBytes)}
		}
	}
	return nil
}

// Encode tokenises texts with the model's truncation.
func (m *Model) Encode(texts []string) []Encoding {
	encs := make([]Encoding, len(texts))
	for i, t := range texts {
		encs[i] = m.tok.Encode(t, m.maxLen)
	}
	return encs
}

// infer runs encs, through the batcher when batching is on.
func (m *Model) infer(ctx context.Context, encs []Encoding) ([][]float32, error) {
	if m.batch != nil {
		return m.batch.do(ctx, encs)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.runRows(encs)
}

// Classify returns each text's labels, best first, at most topK (≤ 0: 1).
func (m *Model) Classify(ctx context.Context, texts []string, topK int) ([][]Label, Usage, error) {
	if m.task != TaskClassification {
		return nil, Usage{}, fmt.Errorf("textmodel: Classify on a %s model", m.task)
	}
	encs := m.Encode(texts)
	rows, err := m.infer(ctx, encs)
	if err != nil {
		return nil, Usage{}, err
	}
	if topK <= 0 {
		topK = 1
	}
	topK = min(topK, len(m.labels))
	out := make([][]Label, len(rows))
	for i, logits := range rows {
		if len(logits) != len(m.labels) {
			return nil, Usage{}, fmt.Errorf("textmodel: model gives %d logits for %d labels in config.json", len(logits), len(m.labels))
		}
		probs := softmax(logits)
		ls := make([]Label, len(probs))
		for j, p := range probs {
			ls[j] = Label{m.labels[j], p}
		}
		sort.SliceStable(ls, func(a, b int) bool { return ls[a].Score > ls[b].Score })
		out[i] = ls[:topK]
	}
	return out, usageOf(encs), nil
}

// Embed returns each text's embedding.
func (m *Model) Embed(ctx context.Context, texts []string) ([][]float32, Usage, error) {
	if m.task != TaskEmbeddings {
		return nil, Usage{}, fmt.Errorf("textmodel: Embed on a %s model", m.task)
	}
	encs := m.Encode(texts)
	rows, err := m.infer(ctx, encs)
	if err != nil {
		return nil, Usage{}, err
	}
	return rows, usageOf(encs), nil
}

// Usage counts what a call consumed.
type Usage struct {
	Tokens    int // real tokens fed to the model, special ones included
	Truncated int // texts cut to the max length
}

func usageOf(encs []Encoding) Usage {
	var u Usage
	for _, e := range encs {
		u.Tokens += e.Tokens
		if e.Truncated {
			u.Truncated++
		}
	}
	return u
}

// Warmup runs one short input, so the first request does not pay for
// ONNX Runtime's lazy allocations.
func (m *Model) Warmup(ctx context.Context) error {
	_, err := m.runRows(m.Encode([]string{"warm up"}))
	return err
}

// runRows runs encs as one batch, padded to the longest, and returns one
// row per text: the logits, or the pooled embedding.
func (m *Model) runRows(encs []Encoding) ([][]float32, error) {
	seq := 0
	for _, e := range encs {
		seq = max(seq, len(e.IDs))
	}
	n := len(encs)
	ids := make([]int64, n*seq)
	mask := make([]int64, n*seq)
	for i, e := range encs {
		e = m.tok.Pad(e, seq)
		for j := range seq {
			ids[i*seq+j] = int64(e.IDs[j])
			mask[i*seq+j] = int64(e.Mask[j])
		}
	}
	shape := ort.NewShape(int64(n), int64(seq))
	vals := make([]ort.Value, len(m.inputs))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for k, name := range m.inputs {
		data := make([]int64, n*seq) // token_type_ids: one segment
		switch name {
		case "input_ids":
			data = ids
		case "attention_mask":
			data = mask
		}
		t, err := ort.NewTensor(shape, data)
		if err != nil {
			return nil, fmt.Errorf("textmodel: %w", err)
		}
		vals[k] = t
	}
	outs := []ort.Value{nil}
	if err := m.sess.Run(vals, outs); err != nil {
		return nil, fmt.Errorf("textmodel: run: %w", err)
	}
	defer outs[0].Destroy()
	m.runs.Add(1)
	m.rows.Add(int64(n))
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("textmodel: output %s is %T, want a float32 tensor", m.output, outs[0])
	}
	data, oshape := t.GetData(), t.GetShape()
	rows := make([][]float32, n)
	switch {
	case len(oshape) == 2 && oshape[0] == int64(n):
		w := int(oshape[1])
		for i := range rows {
			rows[i] = append([]float32(nil), data[i*w:(i+1)*w]...)
		}
	case len(oshape) == 3 && oshape[0] == int64(n) && oshape[1] == int64(seq) && m.task == TaskEmbeddings:
		h := int(oshape[2])
		for i := range rows {
			rows[i] = pool(data[i*seq*h:(i+1)*seq*h], mask[i*seq:(i+1)*seq], h, m.pooling)
		}
	default:
		return nil, fmt.Errorf("textmodel: output %s has shape %v for %d texts of %d tokens", m.output, oshape, n, seq)
	}
	if m.normalize {
		for _, r := range rows {
			normalize(r)
		}
	}
	return rows, nil
}

// pool reduces a [seq, h] hidden state to [h]: the mask-weighted mean of
// the tokens (sentence-transformers' mean pooling) or the first ([CLS])
// token.
func pool(hidden []float32, mask []int64, h int, mode string) []float32 {
	out := make([]float32, h)
	if mode == PoolCLS {
		copy(out, hidden[:h])
		return out
	}
	var n float32
	for j, m := range mask {
		if m == 0 {
			continue
		}
		n++
		for k := range h {
			out[k] += hidden[j*h+k]
		}
	}
	n = max(n, 1e-9)
	for k := range out {
		out[k] /= n
	}
	return out
}

func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	s = max(math.Sqrt(s), 1e-12)
	for i := range v {
		v[i] = float32(float64(v[i]) / s)
	}
}

func softmax(logits []float32) []float64 {
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = math.Max(mx, float64(l))
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, l := range logits {
		out[i] = math.Exp(float64(l) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// ioNames reads the graph's input and output names from the ONNX protobuf
// (ModelProto.graph = 7; GraphProto.input = 11, output = 12, initializer =
// 5, whose names are weights, not inputs; ValueInfoProto.name = 1;
// TensorProto.name = 8). Asking ONNX Runtime instead builds a whole
// session, doubling the load.
func ioNames(model []byte) (ins, outs []string, err error) {
	graph, ok := field(model, 7)
	if !ok {
		return nil, nil, errors.New("not an ONNX model (no graph)")
	}
	weights := map[string]bool{}
	var in []string
	for b := graph; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, errors.New("corrupt ONNX graph")
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, nil, errors.New("corrupt ONNX graph")
		}
		if typ == protowire.BytesType && (num == 5 || num == 11 || num == 12) {
			v, _ := protowire.ConsumeBytes(b)
			switch num {
			case 5:
				if name, ok := field(v, 8); ok {
					weights[string(name)] = true
				}
			case 11:
				if name, ok := field(v, 1); ok {
					in = append(in, string(name))
				}
			case 12:
				if name, ok := field(v, 1); ok {
					outs = append(outs, string(name))
				}
			}
		}
		b = b[m:]
	}
	for _, n := range in {
		if !weights[n] {
			ins = append(ins, n)
		}
	}
	if len(ins) == 0 || len(outs) == 0 {
		return nil, nil, errors.New("ONNX graph has no inputs or outputs")
	}
	return ins, outs, nil
}

// field returns the first length-delimited field num of msg.
func field(msg []byte, num protowire.Number) ([]byte, bool) {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, false
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			return v, l >= 0
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return nil, false
		}
		msg = msg[l:]
	}
	return nil, false
}

// intraOpThreads is the intra-op thread count to ask ONNX Runtime for (0:
// its default, one per physical core). With dynamic batching runs are
// serialised, so one run must be able to use every core the instance has:
// on a VM whose vCPUs are one core's hyperthreads the default is 1 thread,
// and a batch then ran on half the machine (bench/text: batching 0.65× of
// unbatched at 16 clients; with a thread per vCPU 1.25×). Without
// batching, concurrent calls run in parallel and the default holds.
func intraOpThreads(o Options, cpus int) int {
	if o.Threads > 0 {
		return o.Threads
	}
	if o.BatchMaxSize > 1 {
		return cpus
	}
	return 0
}
