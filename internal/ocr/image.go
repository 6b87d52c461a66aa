package ocr

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	_ "image/jpeg" // registers JPEG with image.Decode
	_ "image/png"  // registers PNG with image.Decode
	"math"
)

// ErrNotImage is wrapped by Decode errors for bytes that are not a PNG or
// JPEG image.
var ErrNotImage = errors.New("not an image")

// MaxPixels is the default bound on decoded images: 40 megapixels are
// 160 MB as RGBA (plus the RGB copy the pipeline makes), so one request
// cannot take the worker's memory. The header is checked before any pixel
// is decoded: a few KB of PNG can claim 100000×100000 pixels.
const MaxPixels = 40_000_000

// ErrImageTooLarge is wrapped by DecodeLimit errors for images with more
// pixels than allowed.
var ErrImageTooLarge = errors.New("image too large")

// Decode decodes a PNG or JPEG image of at most MaxPixels pixels. Errors
// wrap ErrNotImage or ErrImageTooLarge.
func Decode(b []byte) (image.Image, error) { return DecodeLimit(b, MaxPixels) }

// DecodeLimit decodes a PNG or JPEG image of at most maxPixels pixels
// (≤ 0: MaxPixels), checking its dimensions before decoding any pixel.
func DecodeLimit(b []byte, maxPixels int64) (image.Image, error) {
	if maxPixels <= 0 {
		maxPixels = MaxPixels
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotImage, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: %s of %dx%d pixels", ErrNotImage, format, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return nil, fmt.Errorf("%w: %dx%d pixels > limit %d", ErrImageTooLarge, cfg.Width, cfg.Height, maxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotImage, format, err)
	}
	return img, nil
}

// rgbImage is an 8-bit RGB raster, the one pixel layout the pipeline works on.
type rgbImage struct {
	w, h int
	pix  []uint8 // 3 bytes per pixel, row-major
}

func toRGB(src image.Image) *rgbImage {
	b := src.Bounds()
	rgba, ok := src.(*image.RGBA)
	if !ok || rgba.Rect.Min != (image.Point{}) {
		rgba = image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		// Draw over white so transparent PNGs read as dark text on paper.
		draw.Draw(rgba, rgba.Rect, image.White, image.Point{}, draw.Src)
		draw.Draw(rgba, rgba.Rect, src, b.Min, draw.Over)
	}
	w, h := rgba.Rect.Dx(), rgba.Rect.Dy()
	out := &rgbImage{w: w, h: h, pix: make([]uint8, w*h*3)}
	for y := 0; y < h; y++ {
		row := rgba.Pix[y*rgba.Stride:]
		for x := 0; x < w; x++ {
			copy(out.pix[(y*w+x)*3:(y*w+x)*3+3], row[x*4:x*4+3])
		}
	}
	return out
}

// at returns channel c of the pixel nearest (x, y), clamping to the border
// (OpenCV's BORDER_REPLICATE).
func (m *rgbImage) at(x, y, c int) float32 {
	x = min(max(x, 0), m.w-1)
	y = min(max(y, 0), m.h-1)
	return float32(m.pix[(y*m.w+x)*3+c])
}

// bilinear samples channel c at (fx, fy) in pixel-centre coordinates.
func (m *rgbImage) bilinear(fx, fy float64, c int) float32 {
	x0, y0 := math.Floor(fx), math.Floor(fy)
	ax, ay := float32(fx-x0), float32(fy-y0)
	ix, iy := int(x0), int(y0)
	p00, p10 := m.at(ix, iy, c), m.at(ix+1, iy, c)
	p01, p11 := m.at(ix, iy+1, c), m.at(ix+1, iy+1, c)
	return (p00*(1-ax)+p10*ax)*(1-ay) + (p01*(1-ax)+p11*ax)*ay
}

// resize scales to w x h with bilinear sampling and half-pixel centres, as
// cv2.resize(INTER_LINEAR) does.
func (m *rgbImage) resize(w, h int) *rgbImage {
	out := &rgbImage{w: w, h: h, pix: make([]uint8, w*h*3)}
	sx, sy := float64(m.w)/float64(w), float64(m.h)/float64(h)
	for y := 0; y < h; y++ {
		fy := (float64(y)+0.5)*sy - 0.5
		for x := 0; x < w; x++ {
			fx := (float64(x)+0.5)*sx - 0.5
			for c := 0; c < 3; c++ {
				out.pix[(y*w+x)*3+c] = uint8(min(max(m.bilinear(fx, fy, c)+0.5, 0), 255))
			}
		}
	}
	return out
}

// rotate180 turns an upside-down crop the right way up.
func (m *rgbImage) rotate180() *rgbImage {
	out := &rgbImage{w: m.w, h: m.h, pix: make([]uint8, len(m.pix))}
	n := m.w * m.h
	for i := 0; i < n; i++ {
		copy(out.pix[(n-1-i)*3:(n-1-i)*3+3], m.pix[i*3:i*3+3])
	}
	return out
}

// rotate90CCW turns a tall crop (vertical text) into a line, as PaddleOCR's
// np.rot90 does.
func (m *rgbImage) rotate90CCW() *rgbImage {
	out := &rgbImage{w: m.h, h: m.w, pix: make([]uint8, len(m.pix))}
	for y := 0; y < m.h; y++ {
		for x := 0; x < m.w; x++ {
			// (x, y) → (y, w-1-x)
			dx, dy := y, m.w-1-x
			copy(out.pix[(dy*out.w+dx)*3:(dy*out.w+dx)*3+3], m.pix[(y*m.w+x)*3:(y*m.w+x)*3+3])
		}
	}
	return out
}
