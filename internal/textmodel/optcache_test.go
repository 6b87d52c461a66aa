package textmodel

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/ortcache"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

// TestOptimizedCache: the first load with OptimizedDir writes the
// optimised graph, the second loads from it, and both answer as a load
// without the cache does (the rewrites fuse ops, so within float error).
func TestOptimizedCache(t *testing.T) {
	initRuntime(t)
	if ortcache.CPUKey() == "" {
		t.Skip("CPU not identifiable: the cache is skipped by design")
	}
	c := bertgen.Small()
	c.Labels = labels3
	dir := genModel(t, c, bertgen.Options{})
	cache := t.TempDir()
	texts := []string{"I love this movie!", "The worst film I have ever seen.", strings.Repeat("long ", 300)}
	classify := func(m *Model) [][]Label {
		out, _, err := m.Classify(context.Background(), texts, 3)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := classify(loadModel(t, dir, Options{Task: TaskClassification}))
	for i, wantCached := range []bool{false, true} {
		m := loadModel(t, dir, Options{Task: TaskClassification, OptimizedDir: cache})
		if cached := filepath.Dir(m.Stats().File) == cache; cached != wantCached {
			t.Fatalf("load %d: loaded %s, from the cache = %v, want %v", i, m.Stats().File, cached, wantCached)
		}
		got := classify(m)
		for j := range want {
			for k := range want[j] {
				if got[j][k].Label != want[j][k].Label || !near(got[j][k].Score, want[j][k].Score, 1e-4) {
					t.Fatalf("load %d, text %d: %v, want %v", i, j, got[j], want[j])
				}
			}
		}
	}
	if files, _ := filepath.Glob(filepath.Join(cache, "*")); len(files) != 1 || !strings.HasSuffix(files[0], ".all.onnx") {
		t.Fatalf("cache holds %v, want one level-all graph", files)
	}
}

// BenchmarkLoadDistilBERT compares cold session creation of a
// DistilBERT-sized classifier without and with the optimised-model cache,
// alternating the two in every iteration so machine load hits both alike.
// Reported: session-ms (uncached), cached-session-ms, the same for reading
// the file and for the whole Load (wall and process CPU time). Run with
//
//	go test ./internal/textmodel -run '^$' -bench LoadDistilBERT -benchtime 5x
func BenchmarkLoadDistilBERT(b *testing.B) {
	initRuntime(b)
	if ortcache.CPUKey() == "" {
		b.Skip("CPU not identifiable")
	}
	c := bertgen.DistilBERT()
	c.Labels = []string{"NEGATIVE", "POSITIVE"}
	dir := b.TempDir()
	if err := bertgen.Write(dir, c, bertgen.Options{MaxLength: 512}); err != nil {
		b.Fatal(err)
	}
	cache := b.TempDir()
	// CPU time of the whole process across a Load: less distorted by
	// neighbours than wall time (loads run one at a time here).
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	load := func(o Options) (LoadStats, time.Duration, time.Duration) {
		t0, c0 := time.Now(), cpu()
		m, err := Load(dir, o)
		if err != nil {
			b.Fatal(err)
		}
		d, c := time.Since(t0), cpu()-c0
		st := m.Stats()
		m.Close()
		return st, d, c
	}
	load(Options{Task: TaskClassification, OptimizedDir: cache}) // fills the cache
	var plain, cached, plainAll, cachedAll, plainRead, cachedRead, plainCPU, cachedCPU time.Duration
	b.ResetTimer()
	for i := range b.N {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		for _, useCache := range order {
			o := Options{Task: TaskClassification}
			if useCache {
				o.OptimizedDir = cache
			}
			st, d, c := load(o)
			if useCache {
				if filepath.Dir(st.File) != cache {
					b.Fatalf("loaded %s, not the cached copy", st.File)
				}
				cached, cachedAll, cachedRead, cachedCPU = cached+st.Session, cachedAll+d, cachedRead+st.Read, cachedCPU+c
			} else {
				plain, plainAll, plainRead, plainCPU = plain+st.Session, plainAll+d, plainRead+st.Read, plainCPU+c
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(plain.Milliseconds())/n, "session-ms")
	b.ReportMetric(float64(cached.Milliseconds())/n, "cached-session-ms")
	b.ReportMetric(float64(plainRead.Milliseconds())/n, "read-ms")
	b.ReportMetric(float64(cachedRead.Milliseconds())/n, "cached-read-ms")
	b.ReportMetric(float64(plainAll.Milliseconds())/n, "load-ms")
	b.ReportMetric(float64(cachedAll.Milliseconds())/n, "cached-load-ms")
	b.ReportMetric(float64(plainCPU.Milliseconds())/n, "load-cpu-ms")
	b.ReportMetric(float64(cachedCPU.Milliseconds())/n, "cached-load-cpu-ms")
}
