package ocr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"testing"
)

// pngHeader is the signature and IHDR chunk of a PNG claiming w×h pixels:
// enough for image.DecodeConfig, a few dozen bytes for any size.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	data := make([]byte, 13)
	binary.BigEndian.PutUint32(data[0:], w)
	binary.BigEndian.PutUint32(data[4:], h)
	data[8], data[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), data...)
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func smallPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodeLimitChecksDimensionsFirst: an image over the pixel limit is
// refused from its header, before a pixel is decoded.
func TestDecodeLimitChecksDimensionsFirst(t *testing.T) {
	tests := []struct {
		name      string
		img       []byte
		maxPixels int64
		want      string // "" = decodes
		wantErr   error
	}{
		{"bomb header, default limit", pngHeader(100000, 100000), 0, "image too large: 100000x100000 pixels > limit 40000000", ErrImageTooLarge},
		{"just over the default", pngHeader(8000, 5001), 0, "image too large: 8000x5001 pixels > limit 40000000", ErrImageTooLarge},
		{"configured limit", smallPNG(t, 30, 30), 100, "image too large: 30x30 pixels > limit 100", ErrImageTooLarge},
		{"within the limit", smallPNG(t, 30, 30), 900, "", nil},
		{"zero width", pngHeader(0, 10), 0, "not an image: ...", ErrNotImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := DecodeLimit(tt.img, tt.maxPixels)
			if tt.wantErr == nil {
				if err != nil || img.Bounds().Dx() != 30 {
					t.Fatalf("DecodeLimit = %v, %v; want a 30x30 image", img, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.want[len(tt.want)-3:] != "..." && err.Error() != tt.want {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
		})
	}
}
