package ocr

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ember-run/ember/internal/ortcache"
)

// InitRuntime loads the ONNX Runtime shared library and creates its
// process-wide environment. ONNX Runtime allows one environment per process,
// so later calls are no-ops; Close of an Engine leaves it in place.
func InitRuntime(lib string) error {
	if ort.IsInitialized() {
		return nil
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("ocr: onnx runtime %s: %w", lib, err)
	}
	return nil
}

// RuntimeVersion is the loaded ONNX Runtime's version ("" before InitRuntime).
func RuntimeVersion() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// Load modes for model bytes.
const (
	LoadMmap = "mmap" // map the file (default): no heap copy, page-cache speed
	LoadRead = "read" // read the whole file into the Go heap
)

// Options configure an Engine. The zero value is PaddleOCR's defaults.
type Options struct {
	// Classify runs the orientation classifier and turns upside-down lines
	// (costs one more model and ~10% latency; off by default as in PaddleOCR).
	Classify bool
	// DetLimit caps the longer image side fed to the detector (default 960).
	DetLimit int
	// DB are the box post-processing knobs (zero: PaddleOCR's defaults).
	DB DBParams
	// DropScore drops recognised lines scoring below it (default 0.5).
	DropScore float32
	// RecBatch is how many lines the recogniser reads per run (default 6).
	RecBatch int
	// Threads is ONNX Runtime's intra-op thread count (0: one per core).
	Threads int
	// LoadMode is LoadMmap (default) or LoadRead.
	LoadMode string
	// OptimizedDir, if set, caches each model after ONNX Runtime's graph
	// optimisations, keyed by file, size, mtime and runtime version. Later
	// loads start from the optimised graph and skip session creation's
	// rewriting. By default the cache holds the fully optimised graph
	// (level "all", including the CPU-specific NCHWc layout), keyed by this
	// CPU too and loaded with optimisation off (measured on 2 cores, det+rec
	// concurrently: 89 → 77 ms against the portable cache, same inference
	// speed). See PortableCache.
	OptimizedDir string
	// PortableCache caches at the portable level ("extended"), which every
	// load re-optimises for the CPU at hand (the layout passes run each time,
	// ~12 ms more for det+rec). It is used anyway when the CPU cannot be
	// identified (no /proc/cpuinfo), since a level-"all" graph is only valid
	// on the CPU it was made for.
	PortableCache bool
	// SerialLoad creates the sessions one after another instead of
	// concurrently (for comparison; concurrent is faster on ≥ 2 cores).
	SerialLoad bool
	// Spin lets idle intra-op threads busy-wait for work (ONNX Runtime's
	// default). Off by default: on the few shared cores a serverless
	// instance gets, spinning steals CPU from useful work.
	Spin bool
	// NoMemPattern turns off ONNX Runtime's memory-pattern planning, which
	// records each input shape's allocations on its first run (for
	// measurement: see bench/ocr "first answer").
	NoMemPattern bool
	// NoArena turns off ONNX Runtime's CPU memory arena (for measurement).
	NoArena bool

	// plainCTC decodes without spaceRescue, as PaddleOCR does (for the
	// evaluation's comparison in eval_test.go).
	plainCTC bool
}

func (o Options) withDefaults() Options {
	if o.DetLimit <= 0 {
		o.DetLimit = 960
	}
	if o.DB == (DBParams{}) {
		o.DB = defaultDB()
	}
	if o.DropScore == 0 {
		o.DropScore = 0.5
	}
	if o.RecBatch <= 0 {
		o.RecBatch = 6
	}
	if o.LoadMode == "" {
		o.LoadMode = LoadMmap
	}
	return o
}

// ModelFiles are the files of a PaddleOCR model set.
type ModelFiles struct {
	Det, Rec, Cls, Dict string // Cls may be empty
}

// ErrModelFiles is wrapped when a model directory lacks a required file.
var ErrModelFiles = errors.New("ocr: model files not found")

// FindModelFiles locates the detector, recogniser, classifier and dictionary
// in dir or one level below it (npm packages keep them under assets/), by
// PaddleOCR's naming: *det*.onnx, *rec*.onnx, *cls*.onnx, *keys*.txt or
// *dict*.txt.
func FindModelFiles(dir string) (ModelFiles, error) {
	var f ModelFiles
	cands, _ := filepath.Glob(filepath.Join(dir, "*"))
	sub, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	cands = append(cands, sub...)
	sort.Strings(cands)
	set := func(dst *string, p string) {
		if *dst == "" {
			*dst = p
		}
	}
	for _, p := range cands {
		base := strings.ToLower(filepath.Base(p))
		switch {
		case strings.HasSuffix(base, ".onnx") && strings.Contains(base, "det"):
			set(&f.Det, p)
		case strings.HasSuffix(base, ".onnx") && strings.Contains(base, "rec"):
			set(&f.Rec, p)
		case strings.HasSuffix(base, ".onnx") && strings.Contains(base, "cls"):
			set(&f.Cls, p)
		case strings.HasSuffix(base, ".txt") && (strings.Contains(base, "keys") || strings.Contains(base, "dict")):
			set(&f.Dict, p)
		}
	}
	var missing []string
	if f.Det == "" {
		missing = append(missing, "*det*.onnx")
	}
	if f.Rec == "" {
		missing = append(missing, "*rec*.onnx")
	}
	if f.Dict == "" {
		missing = append(missing, "*keys*.txt")
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("%w in %s: %s", ErrModelFiles, dir, strings.Join(missing, ", "))
	}
	return f, nil
}

// LoadStats says where model loading spent its time.
type LoadStats struct {
	Bytes   int64         // model bytes loaded
	Read    time.Duration // getting the bytes (mmap with prefault, or read)
	Session time.Duration // ONNX Runtime parsing and initialising sessions (wall time)
	// Files are the model files the bytes came from, in load order: the
	// graph-optimised copies when OptimizedDir had them (benchmarks read
	// the same files raw to compare).
	Files []string
}

// Engine runs the OCR pipeline. Its methods are safe for concurrent use
// (ONNX Runtime sessions are).
type Engine struct {
	det, rec, cls *session // cls is nil unless Options.Classify
	chars         []string
	opts          Options
	stats         LoadStats
}

// Load creates the sessions for the models in dir. InitRuntime must have
// succeeded first.
func Load(dir string, opts Options) (*Engine, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("ocr: onnx runtime not initialised")
	}
	opts = opts.withDefaults()
	files, err := FindModelFiles(dir)
	if err != nil {
		return nil, err
	}
	dict, err := os.ReadFile(files.Dict)
	if err != nil {
		return nil, fmt.Errorf("ocr: %w", err)
	}
	e := &Engine{opts: opts}
	if e.chars, err = loadDict(dict); err != nil {
		return nil, fmt.Errorf("ocr: %s: %w", files.Dict, err)
	}
	paths := []struct {
		dst  **session
		path string
	}{{&e.det, files.Det}, {&e.rec, files.Rec}}
	if opts.Classify {
		if files.Cls == "" {
			return nil, fmt.Errorf("%w in %s: *cls*.onnx (needed for orientation)", ErrModelFiles, dir)
		}
		paths = append(paths, struct {
			dst  **session
			path string
		}{&e.cls, files.Cls})
	}
	// Bytes first, one file after another (page-cache speed, a few ms),
	// then the sessions, which are CPU-bound graph initialisation.
	srcs := make([]modelBytes, len(paths))
	defer func() {
		for _, m := range srcs {
			if m.release != nil {
				m.release() // ONNX Runtime copies what it needs while parsing
			}
		}
	}()
	t0 := time.Now()
	cpu := ""
	if opts.OptimizedDir != "" && !opts.PortableCache {
		cpu = ortcache.CPUKey()
	}
	for i, p := range paths {
		m, err := readModel(p.path, opts, cpu)
		if err != nil {
			return nil, err
		}
		srcs[i] = m
		e.stats.Bytes += int64(len(m.data))
		e.stats.Files = append(e.stats.Files, m.src)
	}
	t1 := time.Now()
	e.stats.Read = t1.Sub(t0)
	// Sessions are built concurrently: building one is mostly one core's
	// work. Measured on 2 cores, with spinning off (see Options.Spin):
	// det+rec 118 ms one after another, 85 ms concurrently. (With
	// spinning on, concurrency gains little: 124 → 108 ms.)
	errs := make([]error, len(paths))
	build := func(i int) {
		*paths[i].dst, errs[i] = newSession(srcs[i], opts)
	}
	if opts.SerialLoad {
		for i := range paths {
			build(i)
		}
	} else {
		var wg sync.WaitGroup
		for i := range paths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				build(i)
			}()
		}
		wg.Wait()
	}
	e.stats.Session = time.Since(t1)
	if err := errors.Join(errs...); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Stats reports the model load timings.
func (e *Engine) Stats() LoadStats { return e.stats }

// Close releases the sessions.
func (e *Engine) Close() error {
	var errs []error
	for _, s := range []*session{e.det, e.rec, e.cls} {
		if s != nil {
			errs = append(errs, s.s.Destroy())
		}
	}
	return errors.Join(errs...)
}

// Line is one recognised text line.
type Line struct {
	Text  string    `json:"text"`
	Score float32   `json:"score"`
	Box   [4][2]int `json:"box"` // top-left, top-right, bottom-right, bottom-left
}

// Result is the output for one image.
type Result struct {
	// Text is the lines joined: a space between boxes on the same visual
	// line, a newline between lines.
	Text    string             `json:"text"`
	Lines   []Line             `json:"lines"`
	Timings map[string]float64 `json:"timings_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// Recognize reads the text in img.
func (e *Engine) Recognize(ctx context.Context, img image.Image) (Result, error) {
	t0 := time.Now()
	res := Result{Lines: []Line{}, Timings: map[string]float64{}}
	src := toRGB(img)

	data, h, w := detInput(src, e.opts.DetLimit)
	prob, shape, err := e.det.run(data, 1, 3, int64(h), int64(w))
	if err != nil {
		return res, fmt.Errorf("ocr: detection: %w", err)
	}
	if len(shape) != 4 || shape[2] != int64(h) || shape[3] != int64(w) {
		return res, fmt.Errorf("ocr: detection output shape %v, want [1 1 %d %d]", shape, h, w)
	}
	t1 := time.Now()
	res.Timings["det_ms"] = ms(t1.Sub(t0))

	boxes := dbBoxes(prob, h, w, src.w, src.h, e.opts.DB)
	crops := make([]*rgbImage, len(boxes))
	for i, b := range boxes {
		crops[i] = cropQuad(src, b)
	}
	t2 := time.Now()
	res.Timings["boxes_ms"] = ms(t2.Sub(t1))
	if err := ctx.Err(); err != nil {
		return res, err
	}

	if e.cls != nil && len(crops) > 0 {
		if err := e.orient(crops); err != nil {
			return res, err
		}
		t3 := time.Now()
		res.Timings["cls_ms"] = ms(t3.Sub(t2))
		t2 = t3
	}

	texts, scores, err := e.read(ctx, crops)
	if err != nil {
		return res, err
	}
	res.Timings["rec_ms"] = ms(time.Since(t2))

	var sb strings.Builder
	var prev *quad
	for i, b := range boxes {
		if scores[i] < e.opts.DropScore || texts[i] == "" {
			continue
		}
		var box [4][2]int
		for k, p := range b {
			box[k] = [2]int{int(p.X), int(p.Y)}
		}
		res.Lines = append(res.Lines, Line{Text: texts[i], Score: scores[i], Box: box})
		if prev != nil {
			if sameLine(*prev, b) {
				sb.WriteByte(' ')
			} else {
				sb.WriteByte('\n')
			}
		}
		sb.WriteString(texts[i])
		prev = &boxes[i]
	}
	res.Text = sb.String()
	res.Timings["total_ms"] = ms(time.Since(t0))
	return res, nil
}

// sameLine reports whether b continues the visual line of a: its vertical
// centre falls within a's vertical extent.
func sameLine(a, b quad) bool {
	cy := (b[0].Y + b[3].Y) / 2
	return cy > math.Min(a[0].Y, a[1].Y) && cy < math.Max(a[2].Y, a[3].Y)
}

// orient turns crops the classifier says are upside down.
func (e *Engine) orient(crops []*rgbImage) error {
	for i := 0; i < len(crops); i += e.opts.RecBatch {
		batch := crops[i:min(i+e.opts.RecBatch, len(crops))]
		out, shape, err := e.cls.run(lineInput(batch, clsWidth), int64(len(batch)), 3, recHeight, clsWidth)
		if err != nil {
			return fmt.Errorf("ocr: orientation: %w", err)
		}
		if len(shape) != 2 || shape[1] != 2 {
			return fmt.Errorf("ocr: orientation output shape %v, want [N 2]", shape)
		}
		for k := range batch {
			if p180 := out[k*2+1]; p180 > out[k*2] && p180 > 0.9 {
				crops[i+k] = crops[i+k].rotate180()
			}
		}
	}
	return nil
}

// read recognises crops in batches of similar aspect ratio, which keeps
// padding (wasted compute) small.
func (e *Engine) read(ctx context.Context, crops []*rgbImage) ([]string, []float32, error) {
	texts := make([]string, len(crops))
	scores := make([]float32, len(crops))
	order := make([]int, len(crops))
	for i := range order {
		order[i] = i
	}
	ratio := func(c *rgbImage) float64 { return float64(c.w) / float64(c.h) }
	sort.SliceStable(order, func(a, b int) bool { return ratio(crops[order[a]]) < ratio(crops[order[b]]) })
	for i := 0; i < len(order); i += e.opts.RecBatch {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		idx := order[i:min(i+e.opts.RecBatch, len(order))]
		batch := make([]*rgbImage, len(idx))
		for k, j := range idx {
			batch[k] = crops[j]
		}
		w := batchWidth(batch)
		out, shape, err := e.rec.run(lineInput(batch, w), int64(len(batch)), 3, recHeight, int64(w))
		if err != nil {
			return nil, nil, fmt.Errorf("ocr: recognition: %w", err)
		}
		if len(shape) != 3 || shape[0] != int64(len(batch)) {
			return nil, nil, fmt.Errorf("ocr: recognition output shape %v, want [%d T C]", shape, len(batch))
		}
		steps, classes := int(shape[1]), int(shape[2])
		if classes != len(e.chars) {
			return nil, nil, fmt.Errorf("ocr: recogniser has %d classes but the dictionary gives %d", classes, len(e.chars))
		}
		for k, j := range idx {
			texts[j], scores[j] = ctcGreedy(out[k*steps*classes:(k+1)*steps*classes], steps, classes, e.chars, !e.opts.plainCTC)
		}
	}
	return texts, scores, nil
}

// session is one model with its single input and output.
type session struct {
	s       *ort.DynamicAdvancedSession
	in, out string
}

// modelBytes is one model file's bytes, mapped or read.
type modelBytes struct {
	src, save string // the file loaded; where to save its optimised copy ("" = none)
	// full: save (or src, when it is a cached copy) is optimised at level
	// "all" for this CPU rather than at the portable level "extended".
	full    bool
	data    []byte
	release func()
}

func readModel(path string, opts Options, cpu string) (modelBytes, error) {
	src, save, err := optimizedPaths(path, opts.OptimizedDir, cpu)
	if err != nil {
		return modelBytes{}, err
	}
	m := modelBytes{src: src, save: save, full: cpu != ""}
	if opts.LoadMode == LoadRead {
		m.data, err = os.ReadFile(src)
	} else {
		m.data, m.release, err = mapFile(src)
	}
	if err != nil {
		return modelBytes{}, fmt.Errorf("ocr: %w", err)
	}
	return m, nil
}

func newSession(m modelBytes, opts Options) (*session, error) {
	ins, outs, err := ioNames(m.data)
	if err != nil {
		return nil, fmt.Errorf("ocr: %s: %w", m.src, err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ocr: %w", err)
	}
	defer so.Destroy()
	if opts.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opts.Threads); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	}
	if !opts.Spin {
		// Idle intra-op threads that spin burn the cores the other
		// session's creation, the other request, or a neighbour needs
		// (measured on 2 cores: concurrent det+rec creation 108 → 85 ms,
		// warm OCR of a 600×80 line 68 → 59 ms).
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	}
	if opts.NoMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	}
	if opts.NoArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	}
	var tmp string
	switch {
	case m.save != "":
		// First load: optimise and have the runtime write the result; it is
		// published by rename once complete.
		tmp = m.save + ".tmp-" + strconv.Itoa(os.Getpid())
		level := ort.GraphOptimizationLevel(ort.GraphOptimizationLevelEnableExtended)
		if m.full {
			level = ort.GraphOptimizationLevelEnableAll
		}
		if err := so.SetGraphOptimizationLevel(level); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
		if err := so.SetOptimizedModelFilePath(tmp); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	case m.full:
		// A fully optimised copy made on this CPU: optimising again finds
		// nothing to do but still walks the graph for every pass.
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
			return nil, fmt.Errorf("ocr: %w", err)
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(m.data, ins[:1], outs[:1], so)
	if err != nil {
		return nil, fmt.Errorf("ocr: %s: %w", m.src, err)
	}
	if tmp != "" {
		if err := os.Rename(tmp, m.save); err != nil {
			os.Remove(tmp) // the cache is an optimisation; the session is fine
		}
	}
	return &session{s: s, in: ins[0], out: outs[0]}, nil
}

// optimizedPaths returns the file to load and, when the optimised copy does
// not exist yet, where to save it (see ortcache.Paths).
func optimizedPaths(path, dir, cpu string) (load, save string, err error) {
	load, save, err = ortcache.Paths(path, dir, ort.GetVersion(), cpu)
	if err != nil {
		return "", "", fmt.Errorf("ocr: %w", err)
	}
	return load, save, nil
}

// run feeds one float tensor and returns the first output's data and shape.
func (s *session) run(data []float32, shape ...int64) ([]float32, []int64, error) {
	in, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		return nil, nil, err
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		return nil, nil, err
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, nil, fmt.Errorf("output %s is %T, want float32 tensor", s.out, outs[0])
	}
	// Copy out: the tensor's memory belongs to ONNX Runtime and is freed by
	// Destroy.
	return append([]float32(nil), t.GetData()...), append([]int64(nil), t.GetShape()...), nil
}

// Warmup runs each model once on a blank input, so the first real request
// does not pay for ONNX Runtime's lazy allocations (arena growth, kernel
// selection for the input shape family). The detector and the line models
// warm up concurrently, like their sessions are created.
func (e *Engine) Warmup(ctx context.Context) error {
	blank := &rgbImage{w: recMinWidth, h: recHeight, pix: make([]uint8, recMinWidth*recHeight*3)}
	for i := range blank.pix {
		blank.pix[i] = 255
	}
	det := func() error {
		data, h, w := detInput(blank, e.opts.DetLimit)
		if _, _, err := e.det.run(data, 1, 3, int64(h), int64(w)); err != nil {
			return fmt.Errorf("ocr: warmup detection: %w", err)
		}
		return nil
	}
	lines := func() error {
		if e.cls != nil {
			if err := e.orient([]*rgbImage{blank}); err != nil {
				return fmt.Errorf("ocr: warmup: %w", err)
			}
		}
		if _, _, err := e.read(ctx, []*rgbImage{blank}); err != nil {
			return fmt.Errorf("ocr: warmup: %w", err)
		}
		return nil
	}
	if e.opts.SerialLoad {
		if err := det(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return lines()
	}
	errc := make(chan error, 1)
	go func() { errc <- det() }()
	err := lines()
	return errors.Join(err, <-errc)
}
