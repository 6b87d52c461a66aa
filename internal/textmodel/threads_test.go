package textmodel

import "testing"

func TestIntraOpThreads(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		cpus int
		want int
	}{
		{"unbatched: runtime default", Options{}, 8, 0},
		{"batched: every core", Options{BatchMaxSize: 16}, 8, 8},
		{"batch of one is no batching", Options{BatchMaxSize: 1}, 8, 0},
		{"explicit wins, unbatched", Options{Threads: 3}, 8, 3},
		{"explicit wins, batched", Options{Threads: 1, BatchMaxSize: 16}, 8, 1},
	} {
		if got := intraOpThreads(c.o, c.cpus); got != c.want {
			t.Errorf("%s: intraOpThreads = %d, want %d", c.name, got, c.want)
		}
	}
}
