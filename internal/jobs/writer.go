package jobs

import (
	"context"
	"time"
)

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 1024

// writeOp is one unit of work for the writer. fn may run twice (once in a
// batch that failed, once alone), so it only sets its own results.
type writeOp struct {
	fn   func(Tx) error
	done chan error // nil: nobody waits
}

// runWriter is the single writer: it takes the first pending write, then
// every write already waiting, and commits them in one transaction. Under
// load a commit's duration is the batching window (group commit); idle, a
// lone write commits at once. It returns when quit is closed.
func (s *Service) runWriter(quit <-chan struct{}) {
	defer close(s.writerDone)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case op := <-s.writes:
			batch = append(batch[:0], op)
		case <-quit:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case op := <-s.writes:
				batch = append(batch, op)
			default:
				break more
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

func (s *Service) commit(batch []*writeOp) {
	ctx := context.Background() // a started commit is never abandoned
	err := s.store.Update(ctx, func(tx Tx) error {
		for _, op := range batch {
			if err := op.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, op := range batch {
			op.finish(err)
		}
		return
	}
	// One bad write must not fail its neighbours: retry each alone.
	s.log.Warn("jobs: batch commit failed, retrying writes one by one", "writes", len(batch), "err", err)
	for _, op := range batch {
		op.finish(s.store.Update(ctx, op.fn))
	}
}

func (op *writeOp) finish(err error) {
	if op.done != nil {
		op.done <- err
	}
}

// write commits fn and waits for the commit. It returns ErrClosed once the
// writer has stopped. Once handed to the writer the write is awaited even if
// ctx ends, so a caller never reports failure for a committed write.
func (s *Service) write(ctx context.Context, fn func(Tx) error) error {
	op := &writeOp{fn: fn, done: make(chan error, 1)}
	select {
	case s.writes <- op:
	case <-s.writerDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-op.done
}

// writeAsync hands fn to the writer without waiting for the commit. It
// drops the write once the writer has stopped (recovery covers it).
func (s *Service) writeAsync(fn func(Tx) error) {
	select {
	case s.writes <- &writeOp{fn: fn}:
	case <-s.writerDone:
	}
}

// writeRetry commits fn, retrying store errors with backoff until it
// succeeds or the service stops (a terminal write must not be lost to a
// transient error such as a full disk being cleaned).
func (s *Service) writeRetry(fn func(Tx) error) error {
	for n := 1; ; n++ {
		err := s.write(context.Background(), fn)
		if err == nil || err == ErrClosed {
			return err
		}
		s.log.Error("jobs: write failed, retrying", "err", err)
		t := s.clock.NewTimer(backoff(50*time.Millisecond, 5*time.Second, n))
		select {
		case <-t.C():
		case <-s.stopping:
			t.Stop()
			return ErrClosed
		}
	}
}
