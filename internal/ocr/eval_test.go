package ocr

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"unicode"

	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// The evaluation set: go test ./internal/ocr -run TestEvalCER -v
// (EMBER_CACHE_DIR=~/.cache/ember reuses a warm model cache).
var (
	evalSeed  = flag.Uint64("ocr.seed", 15, "seed of the generated OCR evaluation set")
	evalPer   = flag.Int("ocr.per", 8, "images per category and noise level (8 categories × this)")
	evalShow  = flag.Bool("ocr.show", false, "log every image's reference and reading")
	evalTable = flag.String("ocr.table", "", "also write the result table to this file")
	evalAll   = flag.Bool("ocr.compare", false, "read the set with every configuration of evalConfigs, not only the default")
)

// evalConfig is one configuration of the engine compared on the set.
type evalConfig struct {
	name string
	opts Options
}

// evalConfigs are compared in one run. "before" is the post-processing
// Ember shipped first (PP-OCRv4's inference script: unclip_ratio 1.5, no
// dilation); "unclip 2.0" is PaddleOCR 3.x's ratio; the default adds its
// use_dilation. "PaddleOCR's CTC" is the default but decoded as PaddleOCR
// does, without Ember's spaceRescue, which shows what that rescue is worth.
// The last configuration must be the default: the bounds check it.
func evalConfigs() []evalConfig {
	before := defaultDB()
	before.UnclipRatio, before.Dilate = 1.5, false
	unclip := before
	unclip.UnclipRatio = 2.0
	return []evalConfig{
		{"before (1.5)", Options{DB: before}},
		{"unclip 2.0", Options{DB: unclip}},
		{"PaddleOCR's CTC", Options{plainCTC: true}},
		{"+ dilation (default)", Options{}},
	}
}

// TestEvalCER reads the generated evaluation set with each configuration and
// reports the character error rate (edit distance / reference length) per
// category, end-of-line punctuation dropped and spaces after commas lost.
// It fails when the default configuration regresses past the bounds below.
func TestEvalCER(t *testing.T) {
	if testing.Short() {
		t.Skip("renders and reads the evaluation set with the real model")
	}
	lib, dir := ocrtest.Assets(t)
	if err := InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
	cases := ocrtest.EvalSet(t, *evalSeed, *evalPer)
	configs := evalConfigs()
	if !*evalAll {
		configs = configs[len(configs)-1:]
	}
	results := make([]evalScore, len(configs))
	for ci, c := range configs {
		e, err := Load(dir, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		sc := newEvalScore()
		for _, ec := range cases {
			img, err := Decode(ec.Image)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Recognize(context.Background(), img)
			if err != nil {
				t.Fatalf("%s: %v", ec.Name, err)
			}
			m := scoreReading(ec.Lines, res.Text)
			for _, l := range res.Lines {
				m.recCols += recColumns(l.Box)
			}
			sc.add(ec, m)
			if *evalShow && (m.dist > 0) {
				t.Logf("%s %s: dist %d eol %d comma %d\n  ref %q\n  got %q", c.name, ec.Name, m.dist, m.eolDropped, m.commaSpace,
					strings.Join(ec.Lines, "\n"), res.Text)
			}
		}
		e.Close()
		results[ci] = sc
	}
	table := evalTableText(configs, results, len(cases))
	t.Log("\n" + table)
	if *evalTable != "" {
		if err := os.WriteFile(*evalTable, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Bounds for the default configuration, a little above what it reads on
	// the default set (1.2 %, 0 of 128, 0 of 47) and far below the first
	// post-processing (4.4 %, 39 of 128, 14 of 47).
	got := results[len(results)-1].by["all"]
	if cer := float64(got.dist) / float64(got.refLen); cer > 0.025 {
		t.Errorf("CER %.2f %%, want at most 2.5 %%", 100*cer)
	}
	if got.eolDropped*20 > got.eolPunct {
		t.Errorf("dropped %d of %d end-of-line punctuation marks, want at most 5 %%", got.eolDropped, got.eolPunct)
	}
	if got.commaSpace*10 > got.commas {
		t.Errorf("lost the space after %d of %d commas, want at most 10 %%", got.commaSpace, got.commas)
	}
}

// evalMetrics is one image's reading against its reference.
type evalMetrics struct {
	dist, refLen int
	eolPunct     int // reference lines ending in punctuation
	eolDropped   int // ... whose final punctuation the reading lacks
	commas       int // ", " in the reference
	commaSpace   int // ... read with the comma but without the space
	recCols      int // recogniser input columns of the lines read (compute)
}

// recColumns is how wide a line box is once scaled to the recogniser's
// height 48, before padding: the recogniser's work grows with it.
func recColumns(b [4][2]int) int {
	d := func(p, q [2]int) float64 { return math.Hypot(float64(p[0]-q[0]), float64(p[1]-q[1])) }
	w, h := math.Max(d(b[0], b[1]), d(b[3], b[2])), math.Max(d(b[0], b[3]), d(b[1], b[2]))
	if h < 1 {
		return 0
	}
	return int(math.Ceil(recHeight * w / h))
}

type evalScore struct {
	by map[string]*evalMetrics // "all", category, "clean", "noisy"
}

func newEvalScore() evalScore { return evalScore{by: map[string]*evalMetrics{}} }

func (s evalScore) add(c ocrtest.EvalCase, m evalMetrics) {
	for _, k := range []string{"all", c.Category, map[bool]string{false: "clean", true: "noisy"}[c.Noisy]} {
		a := s.by[k]
		if a == nil {
			a = &evalMetrics{}
			s.by[k] = a
		}
		a.dist += m.dist
		a.refLen += m.refLen
		a.eolPunct += m.eolPunct
		a.eolDropped += m.eolDropped
		a.commas += m.commas
		a.commaSpace += m.commaSpace
		a.recCols += m.recCols
	}
}

func evalTableText(configs []evalConfig, res []evalScore, n int) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	rows := append([]string{"all"}, ocrtest.EvalCategories...)
	rows = append(rows, "clean", "noisy")
	fmt.Fprintf(tw, "CER %%, %d images\t", n)
	for _, c := range configs {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t", r)
		for _, s := range res {
			m := s.by[r]
			fmt.Fprintf(tw, "%.2f\t", 100*float64(m.dist)/float64(max(m.refLen, 1)))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "end-of-line punctuation dropped\t")
	for _, s := range res {
		fmt.Fprintf(tw, "%d / %d\t", s.by["all"].eolDropped, s.by["all"].eolPunct)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "space after comma missing\t")
	for _, s := range res {
		fmt.Fprintf(tw, "%d / %d\t", s.by["all"].commaSpace, s.by["all"].commas)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "recogniser input columns (sum)\t")
	for _, s := range res {
		fmt.Fprintf(tw, "%d\t", s.by["all"].recCols)
	}
	fmt.Fprintln(tw)
	tw.Flush()
	return sb.String()
}

// scoreReading compares a reading with the reference lines. Both sides are
// normalised first (normLine), and lines are joined by one space, so a line
// break costs nothing but a lost or extra character does.
func scoreReading(ref []string, got string) evalMetrics {
	var r []rune
	var lineEnds []int
	for _, l := range ref {
		if len(r) > 0 {
			r = append(r, ' ')
		}
		r = append(r, []rune(normLine(l))...)
		lineEnds = append(lineEnds, len(r)-1)
	}
	var gl []string
	for _, l := range strings.Split(got, "\n") {
		if l = normLine(l); l != "" {
			gl = append(gl, l)
		}
	}
	g := []rune(strings.Join(gl, " "))
	dist, kept := align(r, g)
	m := evalMetrics{dist: dist, refLen: len(r)}
	for _, e := range lineEnds {
		if e >= 0 && unicode.IsPunct(r[e]) {
			m.eolPunct++
			if !kept[e] {
				m.eolDropped++
			}
		}
	}
	for i := 0; i+1 < len(r); i++ {
		if r[i] == ',' && r[i+1] == ' ' {
			m.commas++
			if kept[i] && !kept[i+1] {
				m.commaSpace++
			}
		}
	}
	return m
}

// normLine maps full-width punctuation to ASCII (the recogniser's dictionary
// has both and the two are the same character to a reader), collapses white
// space, and drops spaces next to Han characters (Chinese has no word gaps,
// so a space there is neither right nor wrong).
func normLine(s string) string {
	s = strings.NewReplacer("，", ",", "。", ".", "！", "!", "？", "?", "；", ";", "：", ":", "（", "(", "）", ")").Replace(s)
	rs := []rune(strings.Join(strings.Fields(s), " "))
	out := rs[:0]
	for i, c := range rs {
		if c == ' ' && ((i > 0 && unicode.Is(unicode.Han, rs[i-1])) || (i+1 < len(rs) && unicode.Is(unicode.Han, rs[i+1]))) {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// align is the Levenshtein distance of ref and got, and for each reference
// rune whether an optimal alignment matches it exactly.
func align(ref, got []rune) (int, []bool) {
	n, m := len(ref), len(got)
	d := make([][]int, n+1)
	for i := range d {
		d[i] = make([]int, m+1)
		d[i][0] = i
	}
	for j := 0; j <= m; j++ {
		d[0][j] = j
	}
	for i := 1; i <= n; i++ {
		for j := 1; j <= m; j++ {
			sub := d[i-1][j-1]
			if ref[i-1] != got[j-1] {
				sub++
			}
			d[i][j] = min(sub, d[i-1][j]+1, d[i][j-1]+1)
		}
	}
	kept := make([]bool, n)
	for i, j := n, m; i > 0; {
		switch {
		case j > 0 && ref[i-1] == got[j-1] && d[i][j] == d[i-1][j-1]:
			kept[i-1] = true
			i, j = i-1, j-1
		case j > 0 && d[i][j] == d[i-1][j-1]+1:
			i, j = i-1, j-1
		case d[i][j] == d[i-1][j]+1:
			i--
		default:
			j--
		}
	}
	return d[n][m], kept
}
