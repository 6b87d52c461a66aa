package textmodel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeRun records the batch sizes it ran and answers each encoding with
// its first id, so callers can check they got their own rows back.
type fakeRun struct {
	mu      sync.Mutex
	batches []int
}

func (f *fakeRun) run(encs []Encoding) ([][]float32, error) {
	f.mu.Lock()
	f.batches = append(f.batches, len(encs))
	f.mu.Unlock()
	rows := make([][]float32, len(encs))
	for i, e := range encs {
		rows[i] = []float32{float32(e.IDs[0])}
	}
	return rows, nil
}

func encs(ids ...int32) []Encoding {
	out := make([]Encoding, len(ids))
	for i, id := range ids {
		out[i] = Encoding{IDs: []int32{id}}
	}
	return out
}

func TestBatcher(t *testing.T) {
	t.Run("lone request runs after max_delay", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRun{}
			b := newBatcher(f.run, 4, 10*time.Millisecond)
			defer b.close()
			start := time.Now()
			rows, err := b.do(context.Background(), encs(7))
			if err != nil || len(rows) != 1 || rows[0][0] != 7 {
				t.Fatalf("rows %v err %v", rows, err)
			}
			if d := time.Since(start); d != 10*time.Millisecond {
				t.Errorf("waited %v, want max_delay 10ms", d)
			}
		})
	})
	t.Run("full batch runs at once; overflow opens the next", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRun{}
			b := newBatcher(f.run, 4, time.Hour)
			defer b.close()
			var wg sync.WaitGroup
			results := make([][][]float32, 3)
			for i, e := range [][]Encoding{encs(1, 2), encs(3, 4), encs(5)} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], _ = b.do(context.Background(), e)
				}()
				synctest.Wait() // submit in order
			}
			wg.Wait()
			if len(f.batches) != 2 || f.batches[0] != 4 || f.batches[1] != 1 {
				t.Errorf("batches %v, want [4 1]", f.batches)
			}
			want := [][]float32{{1, 2}, {3, 4}, {5}}
			for i, r := range results {
				for j, row := range r {
					if row[0] != want[i][j] {
						t.Errorf("caller %d got %v", i, r)
					}
				}
			}
		})
	})
	t.Run("a caller that left is not run", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRun{}
			b := newBatcher(f.run, 4, 10*time.Millisecond)
			defer b.close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			defer cancel()
			if _, err := b.do(ctx, encs(1)); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			synctest.Wait()
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.batches) != 0 {
				t.Errorf("ran %v for a caller that left", f.batches)
			}
		})
	})
	t.Run("close fails waiting callers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRun{}
			b := newBatcher(f.run, 4, time.Hour)
			errc := make(chan error, 1)
			go func() { _, err := b.do(context.Background(), encs(1)); errc <- err }()
			synctest.Wait()
			b.close()
			if err := <-errc; !errors.Is(err, errClosed) {
				t.Errorf("err %v, want errClosed", err)
			}
		})
	})
}
