package textmodel

import (
	"context"
	"errors"
	"time"
)

// runFunc runs one batch of encodings and returns one output row each.
type runFunc func(encs []Encoding) ([][]float32, error)

// batchReq is one caller's encodings waiting for a run.
type batchReq struct {
	ctx  context.Context
	encs []Encoding
	done chan batchResult // buffered (1): the loop never blocks on a caller
}

type batchResult struct {
	rows [][]float32
	err  error
}

// batcher is the dynamic batcher (Triton's, Modal's @batched): requests
// that arrive while a batch is open join it, and the batch runs when it
// holds maxSize texts or maxDelay after its first request, whichever is
// first. A request is never split across runs; one that would overflow the
// open batch opens the next. While a batch runs, arriving requests queue
// and form the next one. The loop goroutine is owned by the batcher and
// ends with close.
type batcher struct {
	run      runFunc
	maxSize  int
	maxDelay time.Duration
	reqs     chan *batchReq
	stop     chan struct{}
	done     chan struct{}
}

// errClosed is returned to callers after the model is closed.
var errClosed = errors.New("textmodel: model closed")

func newBatcher(run runFunc, maxSize int, maxDelay time.Duration) *batcher {
	b := &batcher{run: run, maxSize: maxSize, maxDelay: maxDelay,
		reqs: make(chan *batchReq), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

// do queues encs for the next batch and waits for their rows.
func (b *batcher) do(ctx context.Context, encs []Encoding) ([][]float32, error) {
	r := &batchReq{ctx: ctx, encs: encs, done: make(chan batchResult, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stop:
		return nil, errClosed
	}
	select {
	case res := <-r.done:
		return res.rows, res.err
	case <-ctx.Done():
		return nil, ctx.Err() // the loop skips or discards it
	}
}

func (b *batcher) close() {
	close(b.stop)
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	var next *batchReq
	for {
		first := next
		next = nil
		if first == nil {
			select {
			case first = <-b.reqs:
			case <-b.stop:
				return
			}
		}
		batch, n := []*batchReq{first}, len(first.encs)
		timer := time.NewTimer(b.maxDelay)
	collect:
		for n < b.maxSize {
			select {
			case r := <-b.reqs:
				if n+len(r.encs) > b.maxSize {
					next = r
					break collect
				}
				batch, n = append(batch, r), n+len(r.encs)
			case <-timer.C:
				break collect
			case <-b.stop:
				timer.Stop()
				for _, r := range append(batch, next) {
					if r != nil {
						r.done <- batchResult{err: errClosed}
					}
				}
				return
			}
		}
		timer.Stop()
		b.runBatch(batch)
	}
}

// runBatch runs the live requests of batch as one run and hands each its
// rows. Requests whose callers left are dropped before the run.
func (b *batcher) runBatch(batch []*batchReq) {
	live := batch[:0]
	var encs []Encoding
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.done <- batchResult{err: r.ctx.Err()}
			continue
		}
		live = append(live, r)
		encs = append(encs, r.encs...)
	}
	if len(live) == 0 {
		return
	}
	rows, err := b.run(encs)
	for _, r := range live {
		if err != nil {
			r.done <- batchResult{err: err}
			continue
		}
		r.done <- batchResult{rows: rows[:len(r.encs)]}
		rows = rows[len(r.encs):]
	}
}
