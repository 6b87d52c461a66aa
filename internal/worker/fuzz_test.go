package worker

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// FuzzReadImage feeds arbitrary bodies, in each accepted shape, to the
// request reader of the OCR worker: no panic, and what it accepts is a
// non-empty image of at most the limit.
func FuzzReadImage(f *testing.F) {
	types := []string{"image/png", "application/json", "multipart/form-data; boundary=XX", "multipart/form-data", "text/plain"}
	f.Add(uint8(0), []byte("\x89PNG\r\n\x1a\nrest"))
	f.Add(uint8(1), []byte(`{"image":"iVBORw0KGgo="}`))
	f.Add(uint8(1), []byte(`{"image":"data:image/png;base64,iVBORw0KGgo="}`))
	f.Add(uint8(2), []byte("--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nPNGDATA\r\n--XX--\r\n"))
	f.Add(uint8(3), []byte("x"))
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		r := httptest.NewRequest("POST", "/predict", bytes.NewReader(body))
		r.Header.Set("Content-Type", types[int(kind)%len(types)])
		b, err := readImage(r, limit)
		if err != nil {
			return
		}
		if len(b) == 0 || len(b) > limit {
			t.Fatalf("accepted %d image bytes (limit %d)", len(b), limit)
		}
	})
}
