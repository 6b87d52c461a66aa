package ocr

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strings"
)

// recHeight is the recogniser's fixed input height; its width follows the
// widest crop of a batch, at least recMinWidth (PaddleOCR's 3x48x320).
const (
	recHeight   = 48
	recMinWidth = 320
	clsWidth    = 192
)

// lineInput resizes each crop to height 48, keeping its aspect ratio up to
// width w, and writes it into a zero-padded [len(crops), 3, 48, w] tensor
// normalised to [-1, 1] in BGR order (PaddleOCR's resize_norm_img).
func lineInput(crops []*rgbImage, w int) []float32 {
	plane := recHeight * w
	data := make([]float32, len(crops)*3*plane)
	for n, c := range crops {
		rw := min(w, int(math.Ceil(recHeight*float64(c.w)/float64(c.h))))
		rw = max(rw, 1)
		r := c.resize(rw, recHeight)
		base := n * 3 * plane
		for y := 0; y < recHeight; y++ {
			for x := 0; x < rw; x++ {
				i := y*rw + x
				for ch := 0; ch < 3; ch++ {
					v := float32(r.pix[i*3+2-ch])/255*2 - 1
					data[base+ch*plane+y*w+x] = v
				}
			}
		}
	}
	return data
}

// batchWidth is the tensor width for a batch: 48 × the widest aspect ratio,
// and never narrower than the model's 320.
func batchWidth(crops []*rgbImage) int {
	ratio := float64(recMinWidth) / recHeight
	for _, c := range crops {
		ratio = math.Max(ratio, float64(c.w)/float64(c.h))
	}
	return int(recHeight * ratio)
}

// spaceRescue is the space-class probability mass, summed over the blank run
// between two characters, that counts as a word gap. PP-OCRv4's Chinese
// recogniser (trained mostly on unspaced Chinese) rarely lets the space class
// win a step outright, so plain greedy decoding reads "Hello Ember" as
// "HelloEmber". Measured on rendered English: at word gaps the mass is
// 0.06-0.45 (e.g. "Serverless inference": 0.005+0.039+0.019), between letters
// of a word it stays under 0.01, so 0.03 separates them.
const spaceRescue = 0.03

// ctcGreedy decodes one [T, C] probability sequence: take the best class per
// step, merge repeats, drop blanks (class 0), and restore word gaps (see
// spaceRescue; the space class is the last one). The score is the mean
// probability of the kept steps.
func ctcGreedy(probs []float32, steps, classes int, chars []string, rescue bool) (string, float32) {
	var sb strings.Builder
	var sum float32
	var kept int
	prev := -1
	space := classes - 1
	var gapSpace float32 // space probability mass since the last character
	for t := 0; t < steps; t++ {
		row := probs[t*classes : (t+1)*classes]
		best, bp := 0, row[0]
		for c, p := range row {
			if p > bp {
				best, bp = c, p
			}
		}
		if best == 0 {
			gapSpace += row[space]
		}
		if best != 0 && best != prev && best < len(chars) {
			if rescue && kept > 0 && best != space && gapSpace >= spaceRescue && !strings.HasSuffix(sb.String(), " ") {
				sb.WriteByte(' ')
			}
			sb.WriteString(chars[best])
			sum += bp
			kept++
			gapSpace = 0
		}
		prev = best
	}
	if kept == 0 {
		return "", 0
	}
	return strings.TrimSpace(sb.String()), sum / float32(kept)
}

// loadDict builds the class list the recogniser was trained with: blank at
// index 0, one entry per dictionary line, then a space (use_space_char).
func loadDict(b []byte) ([]string, error) {
	chars := []string{""}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		chars = append(chars, strings.TrimRight(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dictionary: %w", err)
	}
	if len(chars) < 2 {
		return nil, fmt.Errorf("dictionary: empty")
	}
	return append(chars, " "), nil
}
