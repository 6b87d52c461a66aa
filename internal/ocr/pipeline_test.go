package ocr

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

func TestCTCGreedy(t *testing.T) {
	chars := []string{"", "a", "b", "c", " "}
	// onehot builds a [T, 5] sequence whose step t puts p on class seq[t]
	// and space probability sp[t] (rest on blank when class is 0).
	onehot := func(seq []int, sp []float32) []float32 {
		out := make([]float32, len(seq)*5)
		for t, c := range seq {
			out[t*5+c] = 0.9
			if sp != nil {
				out[t*5+4] += sp[t]
			}
		}
		return out
	}
	tests := []struct {
		name  string
		seq   []int
		space []float32
		want  string
	}{
		{"merges repeats", []int{1, 1, 0, 2, 2, 2, 3}, nil, "abc"},
		{"blank separates doubles", []int{1, 0, 1}, nil, "aa"},
		{"all blank", []int{0, 0, 0}, nil, ""},
		{"explicit space", []int{1, 4, 2}, nil, "a b"},
		{"rescued word gap", []int{1, 0, 0, 2}, []float32{0, 0.02, 0.02, 0}, "a b"},
		{"faint gap is no word break", []int{1, 0, 0, 2}, []float32{0, 0.005, 0.005, 0}, "ab"},
		{"no leading or trailing space", []int{4, 1, 4}, nil, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, score := ctcGreedy(onehot(tt.seq, tt.space), len(tt.seq), 5, chars, true)
			if got != tt.want {
				t.Errorf("ctcGreedy = %q, want %q", got, tt.want)
			}
			if tt.want != "" && (score < 0.89 || score > 1) {
				t.Errorf("score = %v, want about 0.9", score)
			}
		})
	}
}

func TestMinAreaRectRotated(t *testing.T) {
	// A 40x10 rectangle turned by 30°.
	a := math.Pi / 6
	ux, uy := math.Cos(a), math.Sin(a)
	r0 := rect{cx: 50, cy: 50, w: 40, h: 10, ux: ux, uy: uy}
	q := r0.corners()
	got := minAreaRect(convexHull(q[:]))
	if math.Abs(got.w-40) > 1e-6 || math.Abs(got.h-10) > 1e-6 || math.Abs(got.cx-50) > 1e-6 || math.Abs(got.cy-50) > 1e-6 {
		t.Errorf("minAreaRect = %+v, want 40x10 at (50,50)", got)
	}
}

func TestHomographyMapsCorners(t *testing.T) {
	from := quad{{0, 0}, {100, 0}, {100, 20}, {0, 20}}
	to := quad{{10, 5}, {110, 15}, {108, 37}, {8, 27}}
	h, ok := homography(from, to)
	if !ok {
		t.Fatal("homography failed")
	}
	for i := range from {
		x, y := h.apply(from[i].X, from[i].Y)
		if math.Hypot(x-to[i].X, y-to[i].Y) > 1e-6 {
			t.Errorf("corner %d maps to (%v,%v), want %v", i, x, y, to[i])
		}
	}
	if _, ok := homography(from, quad{}); ok {
		t.Error("degenerate target accepted")
	}
}

func TestDBBoxes(t *testing.T) {
	// A 64x32 map with one text kernel: rows 12..19, columns 10..49.
	const w, h = 64, 32
	prob := make([]float32, w*h)
	for y := 12; y < 20; y++ {
		for x := 10; x < 50; x++ {
			prob[y*w+x] = 0.9
		}
	}
	prob[2*w+2] = 0.9 // a speck: below the minimum size
	first := defaultDB()
	first.UnclipRatio, first.Dilate = 1.5, false
	tests := []struct {
		name string
		p    DBParams
		want quad
	}{
		// Kernel 39x7 (pixel centres); unclip d = 39*7*1.5/(2*46) ≈ 4.45,
		// so 47.9x15.9 map pixels centred on (29.5, 15.5): x 5.55..53.45,
		// y 7.55..23.45, scaled 2x and rounded.
		{"unclip 1.5, no dilation", first, quad{{11, 15}, {107, 15}, {107, 47}, {11, 47}}},
		// Dilation adds a column and a row (40x8 centred on (30, 16));
		// d = 40*8*2/(2*48) ≈ 6.67: x 3.33..56.67, y 5.33..26.67.
		{"defaults: unclip 2.0, dilation", defaultDB(), quad{{7, 11}, {113, 11}, {113, 53}, {7, 53}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			boxes := dbBoxes(prob, h, w, 2*w, 2*h, tt.p)
			if len(boxes) != 1 {
				t.Fatalf("got %d boxes, want 1: %v", len(boxes), boxes)
			}
			b := boxes[0]
			for i := range b {
				if math.Abs(b[i].X-tt.want[i].X) > 1 || math.Abs(b[i].Y-tt.want[i].Y) > 1 {
					t.Errorf("box = %v, want about %v", b, tt.want)
					break
				}
			}
		})
	}
}

func TestDilate2x2(t *testing.T) {
	// One set pixel at (1, 1) of a 3x3 map also sets (2, 1), (1, 2) and
	// (2, 2): OpenCV's 2x2 kernel, anchored at its lower-right cell.
	m := make([]bool, 9)
	m[4] = true
	got := dilate2x2(m, 3, 3)
	want := []bool{false, false, false, false, true, true, false, true, true}
	if !slices.Equal(got, want) {
		t.Errorf("dilate2x2 = %v, want %v", got, want)
	}
}

func TestBoxScoreModes(t *testing.T) {
	// A diagonal stroke 4 pixels wide on an empty map. The fast score
	// averages its minimum-area rectangle, the slow one its hull, which
	// holds every stroke pixel and no more background than the rectangle:
	// slow ≥ fast, and high for a solid stroke.
	const w, h = 40, 40
	prob := make([]float32, w*h)
	for i := 5; i < 35; i++ {
		for d := 0; d < 4; d++ {
			prob[i*w+i+d] = 0.8
		}
	}
	labels, n := components(func() []bool {
		m := make([]bool, len(prob))
		for i, v := range prob {
			m[i] = v > 0.3
		}
		return m
	}(), h, w)
	if n != 1 {
		t.Fatalf("%d regions, want 1", n)
	}
	hull := regionHulls(labels, h, w, n)[0]
	q := minAreaRect(hull).corners()
	fast, slow := polyScore(prob, h, w, q[:]), polyScore(prob, h, w, hull)
	if slow < fast || slow < 0.6 {
		t.Errorf("slow score %.3f, fast %.3f: want slow ≥ fast and ≥ 0.6", slow, fast)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("GIF89a nope"), []byte("\x89PNG\r\n\x1a\n")} {
		if _, err := Decode(b); !errors.Is(err, ErrNotImage) {
			t.Errorf("Decode(%q) err = %v, want ErrNotImage", b, err)
		}
	}
}

// pb encodes length-delimited protobuf fields for TestIONames.
func pb(num int, val []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(num)<<3|2)
	out = binary.AppendUvarint(out, uint64(len(val)))
	return append(out, val...)
}

func TestIONames(t *testing.T) {
	vi := func(name string) []byte { return pb(1, []byte(name)) }
	graph := append(pb(5, pb(8, []byte("w0"))), pb(11, vi("x"))...)
	graph = append(graph, pb(11, vi("w0"))...) // an initializer listed as input
	graph = append(graph, pb(12, vi("sigmoid_0.tmp_0"))...)
	model := append([]byte{0x08, 0x07}, pb(7, graph)...) // ir_version varint, then graph
	in, out, err := ioNames(model)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0] != "x" || len(out) != 1 || out[0] != "sigmoid_0.tmp_0" {
		t.Errorf("ioNames = %v, %v; want [x], [sigmoid_0.tmp_0]", in, out)
	}
	if _, _, err := ioNames([]byte{0xff}); err == nil {
		t.Error("garbage accepted")
	}
}
