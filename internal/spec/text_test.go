package spec

import (
	"strings"
	"testing"
	"time"
)

func TestTextAndBatchFields(t *testing.T) {
	base := "name: s\nruntime: onnx\ntask: text-classification\nmodel: ./m\n"
	for _, tc := range []struct {
		yaml, want string // want: "" parses, else a substring of the error
	}{
		{"batch: {max_size: 16, max_delay: 10ms}\ntext: {max_length: 128}\n", ""},
		{"batch: {max_size: 16}\nscaling: {concurrency: 16}\n", ""},
		{"batch: {max_size: 16}\nscaling: {concurrency: 4}\n", "scaling.concurrency: 4 is below batch.max_size 16: an instance never holds more than 4 requests at once, so its batches could never fill"},
		{"batch: {max_size: 0}\n", "batch.max_size: must be in [1, 256] (got 0)"},
		{"batch: {max_size: 8, max_delay: 2s}\n", "batch.max_delay: must be in [0, 1s] (got 2s)"},
		{"text: {max_length: -1}\n", "text.max_length: must be in [0, 8192]"},
		{"text: {pooling: max}\n", `text.pooling: must be mean or cls (got "max")`},
		{"text: {padding: fixed}\n", `text.padding: must be longest, or omitted for tokenizer.json's (got "fixed")`},
		{"text: {padding: longest}\n", ""},
	} {
		f, err := Parse([]byte(base + tc.yaml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want %q", tc.yaml, err, tc.want)
		case tc.want == "" && strings.Contains(tc.yaml, "10ms") && (f.Batch.MaxDelay.D() != 10*time.Millisecond || f.Text.MaxLength != 128):
			t.Errorf("%s: parsed %+v %+v", tc.yaml, f.Batch, f.Text)
		}
	}
}
