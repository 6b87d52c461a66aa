package instance

import (
	"testing"

	"github.com/ember-run/ember/internal/spec"
)

func TestStartSpecTaskOptions(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", ""},
		{"batch: {max_size: 16}\n", `{"batch_max_delay_ms":5,"batch_max_size":16}`},
		{"batch: {max_size: 4, max_delay: 2500us}\ntext: {max_length: 64, pooling: cls, normalize: false, padding: longest}\n",
			`{"batch_max_delay_ms":2.5,"batch_max_size":4,"max_length":64,"normalize":false,"padding":"longest","pooling":"cls"}`},
	} {
		fn, err := spec.Parse([]byte("name: e\nruntime: onnx\ntask: embeddings\nmodel: ./m\n" + tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := StartSpecFor(fn, 1, "i").TaskOptions; got != tc.want {
			t.Errorf("%q: options %s, want %s", tc.yaml, got, tc.want)
		}
	}
}
