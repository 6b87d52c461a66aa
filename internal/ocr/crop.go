package ocr

import "math"

// cropQuad cuts the quad q out of img and warps it to an upright rectangle
// (PaddleOCR's get_rotate_crop_image). Crops at least 1.5 times taller than
// wide are turned 90° so vertical text reads as a line.
func cropQuad(img *rgbImage, q quad) *rgbImage {
	w := int(math.Max(dist(q[0], q[1]), dist(q[3], q[2])))
	h := int(math.Max(dist(q[0], q[3]), dist(q[1], q[2])))
	w, h = max(w, 1), max(h, 1)
	dst := quad{{0, 0}, {float64(w), 0}, {float64(w), float64(h)}, {0, float64(h)}}
	// Map destination pixels back into the source, so every output pixel is
	// sampled exactly once.
	H, ok := homography(dst, q)
	out := &rgbImage{w: w, h: h, pix: make([]uint8, w*h*3)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var sx, sy float64
			if ok {
				sx, sy = H.apply(float64(x), float64(y))
			} else { // degenerate quad: fall back to its bounding box
				sx, sy = q[0].X+float64(x), q[0].Y+float64(y)
			}
			for c := 0; c < 3; c++ {
				out.pix[(y*w+x)*3+c] = uint8(min(max(img.bilinear(sx, sy, c)+0.5, 0), 255))
			}
		}
	}
	if float64(h)/float64(w) >= 1.5 {
		return out.rotate90CCW()
	}
	return out
}

// mat3 is a 3x3 homography in row-major order.
type mat3 [9]float64

func (m mat3) apply(x, y float64) (float64, float64) {
	d := m[6]*x + m[7]*y + m[8]
	return (m[0]*x + m[1]*y + m[2]) / d, (m[3]*x + m[4]*y + m[5]) / d
}

// homography solves for the projective map taking from[i] to to[i] (the
// 8x8 system of cv2.getPerspectiveTransform, by Gaussian elimination with
// partial pivoting). ok is false for degenerate quads.
func homography(from, to quad) (mat3, bool) {
	var a [8][9]float64
	for i := 0; i < 4; i++ {
		x, y, u, v := from[i].X, from[i].Y, to[i].X, to[i].Y
		a[2*i] = [9]float64{x, y, 1, 0, 0, 0, -x * u, -y * u, u}
		a[2*i+1] = [9]float64{0, 0, 0, x, y, 1, -x * v, -y * v, v}
	}
	for col := 0; col < 8; col++ {
		piv := col
		for r := col + 1; r < 8; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[piv][col]) {
				piv = r
			}
		}
		if math.Abs(a[piv][col]) < 1e-12 {
			return mat3{}, false
		}
		a[col], a[piv] = a[piv], a[col]
		for r := 0; r < 8; r++ {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c < 9; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	var m mat3
	for i := 0; i < 8; i++ {
		m[i] = a[i][8] / a[i][i]
	}
	m[8] = 1
	return m, true
}
