package ocr

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the image decoder that every OCR
// request goes through: no panic, and an accepted image is within the
// pixel bound that keeps a request's memory bounded.
func FuzzDecode(f *testing.F) {
	img := image.NewGray(image.Rect(0, 0, 8, 4))
	img.Set(1, 1, color.White)
	var p, j bytes.Buffer
	_ = png.Encode(&p, img)
	_ = jpeg.Encode(&j, img, nil)
	f.Add(p.Bytes())
	f.Add(j.Bytes())
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		r := m.Bounds()
		if r.Dx() <= 0 || r.Dy() <= 0 || r.Dx()*r.Dy() > MaxPixels {
			t.Fatalf("accepted a %dx%d image", r.Dx(), r.Dy())
		}
	})
}
