package gpu

import (
	"math"
	"strconv"
	"strings"
)

// models are the GPU models whose marketed memory sizes are known, so a
// device maps to the class the price catalogue uses ("a100-40gb"): the
// driver reports a little less memory than the box says (an H100 80GB
// reports 81559 MiB), so the nearest marketed size is taken.
var models = map[string][]int{
	"a100": {40, 80}, "h100": {80, 94}, "h200": {141}, "h20": {96}, "b200": {180}, "gh200": {96, 144},
	"l4": {24}, "l40": {48}, "l40s": {48}, "t4": {16}, "a10": {24}, "a10g": {24},
	"v100": {16, 32}, "a30": {24}, "a40": {48}, "p100": {16}, "rtx4090": {24}, "rtx3090": {24},
	"rtxa6000": {48}, "rtx6000": {24, 48},
}

// Class maps a device's name and memory to Ember's hardware class: the
// model in lower case, a dash, and its memory in GB, as the price
// catalogue and resources.gpu.type write it:
//
//	NVIDIA A100-SXM4-40GB, 40960 MiB  →  a100-40gb
//	NVIDIA H100 80GB HBM3, 81559 MiB  →  h100-80gb
//	Tesla T4, 15360 MiB               →  t4-16gb
//	NVIDIA GeForce RTX 4090, 24564    →  rtx4090-24gb
//
// A model not in the table keeps its name's words ("quadro-p5000-16gb"),
// with the memory rounded to whole GiB, so it still has a stable class
// an operator can price.
func Class(name string, memMiB int64) string {
	words := strings.FieldsFunc(strings.ToLower(name), func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9')
	})
	// Vendor and family words say nothing about the hardware.
	kept := words[:0]
	for _, w := range words {
		switch w {
		case "nvidia", "tesla", "geforce":
			continue
		}
		kept = append(kept, w)
	}
	words = kept
	gib := float64(memMiB) / 1024
	for i, w := range words {
		if w == "rtx" && i+1 < len(words) {
			w = "rtx" + words[i+1]
		}
		if sizes, ok := models[w]; ok {
			return w + "-" + strconv.Itoa(nearest(sizes, gib, words)) + "gb"
		}
	}
	// Unknown model: its words without a size word, then the memory.
	var parts []string
	for _, w := range words {
		if strings.HasSuffix(w, "gb") {
			continue
		}
		parts = append(parts, w)
	}
	if len(parts) == 0 {
		parts = []string{"gpu"}
	}
	return strings.Join(parts, "-") + "-" + strconv.Itoa(int(math.Round(gib))) + "gb"
}

// nearest picks the marketed size: the one the name states ("80gb"), else
// the one nearest the reported memory.
func nearest(sizes []int, gib float64, words []string) int {
	for _, w := range words {
		if n, err := strconv.Atoi(strings.TrimSuffix(w, "gb")); err == nil && strings.HasSuffix(w, "gb") {
			for _, s := range sizes {
				if s == n {
					return s
				}
			}
		}
	}
	best := sizes[0]
	for _, s := range sizes[1:] {
		if math.Abs(float64(s)-gib) < math.Abs(float64(best)-gib) {
			best = s
		}
	}
	return best
}
