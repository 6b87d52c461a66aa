package ocr

import (
	"bytes"
	"image/png"
	"testing"
)

func TestSampleImage(t *testing.T) {
	b, err := SampleImage("Hello Ember 2026")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got.X != 600 || got.Y != 80 {
		t.Errorf("size = %v, want 600×80", got)
	}
	// Some ink, and not all ink: the text was drawn.
	dark := 0
	for y := 0; y < 80; y++ {
		for x := 0; x < 600; x++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				dark++
			}
		}
	}
	if dark < 500 || dark > 600*80/4 {
		t.Errorf("%d dark pixels: the text was not drawn as expected", dark)
	}
}
