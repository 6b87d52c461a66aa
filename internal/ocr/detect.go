package ocr

import (
	"math"
	"sort"
)

// Normalisation constants of PaddleOCR's detector (ImageNet mean/std),
// applied in BGR channel order because PaddleOCR reads images with OpenCV.
var (
	detMean = [3]float32{0.485, 0.456, 0.406}
	detStd  = [3]float32{0.229, 0.224, 0.225}
)

// detInput resizes img so its longer side is at most limit and both sides
// are multiples of 32 (the detector downsamples 32×), and returns the CHW BGR
// normalised tensor data with its height and width.
//
// E.g. 600x80 with limit 960: no downscale; 80/32 = 2.5 rounds to 3 → 96 high,
// 600/32 = 18.75 → 19 → 608 wide.
func detInput(img *rgbImage, limit int) (data []float32, h, w int) {
	ratio := 1.0
	if m := max(img.w, img.h); m > limit {
		ratio = float64(limit) / float64(m)
	}
	round32 := func(v int) int { return max(int(math.Round(float64(v)/32))*32, 32) }
	h = round32(int(float64(img.h) * ratio))
	w = round32(int(float64(img.w) * ratio))
	r := img
	if h != img.h || w != img.w {
		r = img.resize(w, h)
	}
	data = make([]float32, 3*h*w)
	plane := h * w
	for i := 0; i < plane; i++ {
		for c := 0; c < 3; c++ {
			bgr := 2 - c // channel c of the tensor is B, G, R
			v := float32(r.pix[i*3+bgr]) / 255
			data[c*plane+i] = (v - detMean[c]) / detStd[c]
		}
	}
	return data, h, w
}

// DBParams are the DB (differentiable binarisation) post-processing knobs.
// The defaults are PaddleOCR's (3.x pipeline: thresh 0.3, box_thresh 0.6,
// unclip_ratio 2.0) with its use_dilation on. PP-OCRv4's own inference
// script used unclip_ratio 1.5 without dilation, which Ember shipped first:
// on the generated evaluation set (eval_test.go) its boxes ended a pixel or
// two inside the last glyph and dropped 39 of 128 line-final punctuation
// marks and 14 of 47 spaces after commas; 2.0 with dilation dropped none.
type DBParams struct {
	Thresh      float32 // pixel probability threshold (0.3)
	BoxThresh   float32 // minimum mean probability inside a box (0.6)
	UnclipRatio float64 // how far to grow a shrunk text kernel (2.0)
	MinSize     float64 // smallest box side kept, in map pixels (3)
	MaxBoxes    int     // candidates considered (1000)
	// Dilate grows the thresholded map by a 2x2 kernel before regions are
	// traced (PaddleOCR's use_dilation: each set pixel also sets its right,
	// lower and lower-right neighbours), on by default.
	Dilate bool
	// ScoreMode is how a candidate is scored against BoxThresh: ScoreFast
	// (mean probability inside its minimum-area rectangle, the default) or
	// ScoreSlow (inside the region's own outline; kinder to curved or
	// slanted regions, whose rectangle takes in background).
	ScoreMode string
}

// Score modes of DBParams.
const (
	ScoreFast = "fast"
	ScoreSlow = "slow"
)

func defaultDB() DBParams {
	return DBParams{Thresh: 0.3, BoxThresh: 0.6, UnclipRatio: 2.0, MinSize: 3, MaxBoxes: 1000, Dilate: true, ScoreMode: ScoreFast}
}

type point struct{ X, Y float64 }

// quad is a box as four corners: top-left, top-right, bottom-right,
// bottom-left.
type quad [4]point

// rect is a rotated rectangle: centre, side lengths, and the unit vector of
// the side of length w.
type rect struct {
	cx, cy, w, h float64
	ux, uy       float64
}

func (r rect) corners() quad {
	vx, vy := -r.uy, r.ux
	hw, hh := r.w/2, r.h/2
	pts := [4]point{
		{r.cx - r.ux*hw - vx*hh, r.cy - r.uy*hw - vy*hh},
		{r.cx + r.ux*hw - vx*hh, r.cy + r.uy*hw - vy*hh},
		{r.cx + r.ux*hw + vx*hh, r.cy + r.uy*hw + vy*hh},
		{r.cx - r.ux*hw + vx*hh, r.cy - r.uy*hw + vy*hh},
	}
	return orderQuad(pts)
}

// orderQuad orders four corners as PaddleOCR's get_mini_boxes does: the two
// leftmost points give top-left and bottom-left (by y), the two rightmost
// give top-right and bottom-right.
func orderQuad(p [4]point) quad {
	s := p
	sort.Slice(s[:], func(i, j int) bool { return s[i].X < s[j].X })
	tl, bl := s[0], s[1]
	if bl.Y < tl.Y {
		tl, bl = bl, tl
	}
	tr, br := s[2], s[3]
	if br.Y < tr.Y {
		tr, br = br, tr
	}
	return quad{tl, tr, br, bl}
}

// dbBoxes turns the detector's probability map (h x w) into text boxes in
// the coordinates of a srcW x srcH image.
//
// PaddleOCR traces contours of the thresholded map with OpenCV; we label
// 8-connected components instead, which yields the same outer regions. Each
// region's minimum-area rectangle is scored by the mean probability inside
// it, then grown ("unclipped") by d = area*ratio/perimeter on every side,
// undoing the shrink the DB model was trained with.
func dbBoxes(prob []float32, h, w, srcW, srcH int, p DBParams) []quad {
	mask := make([]bool, len(prob))
	for i, v := range prob {
		mask[i] = v > p.Thresh
	}
	if p.Dilate {
		mask = dilate2x2(mask, h, w)
	}
	labels, n := components(mask, h, w)
	if n > p.MaxBoxes {
		n = p.MaxBoxes
	}
	hulls := regionHulls(labels, h, w, n)
	var boxes []quad
	sx, sy := float64(srcW)/float64(w), float64(srcH)/float64(h)
	for _, hull := range hulls {
		if len(hull) < 3 {
			continue
		}
		r := minAreaRect(hull)
		if min(r.w, r.h) < p.MinSize {
			continue
		}
		var score float32
		if p.ScoreMode == ScoreSlow {
			score = polyScore(prob, h, w, hull)
		} else {
			q := r.corners()
			score = polyScore(prob, h, w, q[:])
		}
		if score < p.BoxThresh {
			continue
		}
		d := r.w * r.h * p.UnclipRatio / (2 * (r.w + r.h))
		r.w += 2 * d
		r.h += 2 * d
		if min(r.w, r.h) < p.MinSize+2 {
			continue
		}
		q := r.corners()
		for i := range q {
			q[i].X = clamp(math.Round(q[i].X*sx), 0, float64(srcW))
			q[i].Y = clamp(math.Round(q[i].Y*sy), 0, float64(srcH))
		}
		if dist(q[0], q[1]) <= 3 || dist(q[0], q[3]) <= 3 {
			continue
		}
		boxes = append(boxes, q)
	}
	sortBoxes(boxes)
	return boxes
}

func clamp(v, lo, hi float64) float64 { return math.Min(math.Max(v, lo), hi) }

func dist(a, b point) float64 { return math.Hypot(a.X-b.X, a.Y-b.Y) }

// dilate2x2 is OpenCV's dilate with a 2x2 kernel of ones (anchor at its
// lower-right cell): a pixel is set if it, its left, upper or upper-left
// neighbour is. It works in place, last pixel first, so every neighbour it
// reads is still undilated.
func dilate2x2(m []bool, h, w int) []bool {
	for y := h - 1; y >= 0; y-- {
		for x := w - 1; x >= 0; x-- {
			i := y*w + x
			v := m[i] || (x > 0 && m[i-1])
			if y > 0 {
				v = v || m[i-w] || (x > 0 && m[i-w-1])
			}
			m[i] = v
		}
	}
	return m
}

// components labels 8-connected set pixels of mask, 1..n (0 = background),
// with an explicit stack so large regions cannot overflow the goroutine stack.
func components(mask []bool, h, w int) ([]int32, int) {
	labels := make([]int32, h*w)
	var n int32
	var stack []int
	for start := range mask {
		if !mask[start] || labels[start] != 0 {
			continue
		}
		n++
		labels[start] = n
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			y, x := i/w, i%w
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					ny, nx := y+dy, x+dx
					if ny < 0 || ny >= h || nx < 0 || nx >= w {
						continue
					}
					j := ny*w + nx
					if labels[j] == 0 && mask[j] {
						labels[j] = n
						stack = append(stack, j)
					}
				}
			}
		}
	}
	return labels, int(n)
}

// regionHulls returns the convex hull of each labelled region 1..n. Only the
// leftmost and rightmost pixel of each row can be hull vertices, so only
// those are collected.
func regionHulls(labels []int32, h, w, n int) [][]point {
	type span struct{ lo, hi int }
	rows := make([]map[int]span, n+1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			l := int(labels[y*w+x])
			if l == 0 || l > n {
				continue
			}
			if rows[l] == nil {
				rows[l] = map[int]span{}
			}
			s, ok := rows[l][y]
			if !ok {
				s = span{x, x}
			}
			s.lo, s.hi = min(s.lo, x), max(s.hi, x)
			rows[l][y] = s
		}
	}
	hulls := make([][]point, 0, n)
	for l := 1; l <= n; l++ {
		var pts []point
		for y, s := range rows[l] {
			pts = append(pts, point{float64(s.lo), float64(y)}, point{float64(s.hi), float64(y)})
		}
		hulls = append(hulls, convexHull(pts))
	}
	return hulls
}

// convexHull is Andrew's monotone chain; it returns the hull counter-
// clockwise without repeating the first point.
func convexHull(pts []point) []point {
	sort.Slice(pts, func(i, j int) bool {
		if pts[i].X != pts[j].X {
			return pts[i].X < pts[j].X
		}
		return pts[i].Y < pts[j].Y
	})
	// Drop duplicates (a one-pixel-wide row contributes the same point twice).
	u := pts[:0]
	for i, p := range pts {
		if i == 0 || p != pts[i-1] {
			u = append(u, p)
		}
	}
	pts = u
	if len(pts) < 3 {
		return pts
	}
	cross := func(o, a, b point) float64 { return (a.X-o.X)*(b.Y-o.Y) - (a.Y-o.Y)*(b.X-o.X) }
	hull := make([]point, 0, 2*len(pts))
	for _, p := range pts {
		for len(hull) >= 2 && cross(hull[len(hull)-2], hull[len(hull)-1], p) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p)
	}
	lower := len(hull) + 1
	for i := len(pts) - 2; i >= 0; i-- {
		p := pts[i]
		for len(hull) >= lower && cross(hull[len(hull)-2], hull[len(hull)-1], p) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p)
	}
	return hull[:len(hull)-1]
}

// minAreaRect finds the smallest rectangle enclosing a convex hull; one of
// its sides lies on a hull edge (rotating calipers), so trying every edge
// direction is enough.
func minAreaRect(hull []point) rect {
	best := rect{w: math.Inf(1), h: math.Inf(1)}
	bestArea := math.Inf(1)
	for i := range hull {
		a, b := hull[i], hull[(i+1)%len(hull)]
		ex, ey := b.X-a.X, b.Y-a.Y
		l := math.Hypot(ex, ey)
		if l == 0 {
			continue
		}
		ux, uy := ex/l, ey/l
		// Prefer the direction closest to horizontal, so that for an upright
		// box "w" runs along the text.
		if math.Abs(uy) > math.Abs(ux) {
			ux, uy = uy, -ux
		}
		if ux < 0 {
			ux, uy = -ux, -uy
		}
		minU, maxU, minV, maxV := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, p := range hull {
			pu := p.X*ux + p.Y*uy
			pv := -p.X*uy + p.Y*ux
			minU, maxU = math.Min(minU, pu), math.Max(maxU, pu)
			minV, maxV = math.Min(minV, pv), math.Max(maxV, pv)
		}
		area := (maxU - minU) * (maxV - minV)
		if area < bestArea {
			bestArea = area
			cu, cv := (minU+maxU)/2, (minV+maxV)/2
			best = rect{
				cx: cu*ux - cv*uy, cy: cu*uy + cv*ux,
				w: maxU - minU, h: maxV - minV,
				ux: ux, uy: uy,
			}
		}
	}
	return best
}

// polyScore is the mean probability over the map pixels inside the convex
// polygon q: the minimum-area rectangle (PaddleOCR's "fast" score mode) or
// the region's hull ("slow"; PaddleOCR fills the traced outline, which for
// a text line differs from its hull only in small notches).
func polyScore(prob []float32, h, w int, q []point) float32 {
	minX, maxX, minY, maxY := q[0].X, q[0].X, q[0].Y, q[0].Y
	for _, p := range q[1:] {
		minX, maxX = math.Min(minX, p.X), math.Max(maxX, p.X)
		minY, maxY = math.Min(minY, p.Y), math.Max(maxY, p.Y)
	}
	x0, x1 := max(int(math.Floor(minX)), 0), min(int(math.Ceil(maxX)), w-1)
	y0, y1 := max(int(math.Floor(minY)), 0), min(int(math.Ceil(maxY)), h-1)
	var sum float64
	var n int
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			if inConvex(q, point{float64(x), float64(y)}) {
				sum += float64(prob[y*w+x])
				n++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return float32(sum / float64(n))
}

// inConvex reports whether p lies inside or on the convex polygon q.
func inConvex(q []point, p point) bool {
	var pos, neg bool
	for i := range q {
		a, b := q[i], q[(i+1)%len(q)]
		c := (b.X-a.X)*(p.Y-a.Y) - (b.Y-a.Y)*(p.X-a.X)
		if c > 1e-9 {
			pos = true
		} else if c < -1e-9 {
			neg = true
		}
	}
	return !(pos && neg)
}

// sortBoxes orders boxes top to bottom, then left to right within a line
// (boxes whose tops differ by under 10 pixels count as one line).
func sortBoxes(b []quad) {
	sort.SliceStable(b, func(i, j int) bool {
		if b[i][0].Y != b[j][0].Y {
			return b[i][0].Y < b[j][0].Y
		}
		return b[i][0].X < b[j][0].X
	})
	for i := 0; i < len(b)-1; i++ {
		for j := i; j >= 0; j-- {
			if math.Abs(b[j+1][0].Y-b[j][0].Y) < 10 && b[j+1][0].X < b[j][0].X {
				b[j], b[j+1] = b[j+1], b[j]
			} else {
				break
			}
		}
	}
}
