package onnx

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

func newLoaded(t *testing.T, loaded int) (*Driver, *stubProc, *recorder) {
	t.Helper()
	proc := &stubProc{}
	d := New(proc, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Loaded: loaded})
	rec := &recorder{}
	d.SetObserver(rec)
	t.Cleanup(func() { d.Close(context.Background()) })
	return d, proc, rec
}

func startFn(t *testing.T, d *Driver, fn, model string) driver.Instance {
	t.Helper()
	in, err := d.Start(context.Background(), driver.StartSpec{Function: fn, Task: "ocr", Model: model})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func park(t *testing.T, in driver.Instance, keep time.Duration) bool {
	t.Helper()
	p, ok := in.(driver.Parker)
	return ok && p.Park(keep)
}

func stopped(in *stubInstance) bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

// A parked worker is its function's, metered to it as loaded, and its next
// start takes the same worker back with a pool_hit phase.
func TestLoadedWorkerTakenBackByItsFunction(t *testing.T) {
	d, proc, rec := newLoaded(t, 2)
	in := startFn(t, d, "ocr", "/m")
	if !park(t, in, time.Hour) {
		t.Fatal("Park = false, want the worker kept")
	}
	select {
	case <-in.Done():
	default:
		t.Error("a parked instance's Done is open; its manager would wait for it")
	}
	if d.LoadedFor("ocr") != 1 {
		t.Fatalf("LoadedFor = %d, want 1", d.LoadedFor("ocr"))
	}
	// Another function, or the same one with another model, never gets it.
	startFn(t, d, "other", "/m")
	startFn(t, d, "ocr", "/other-model")
	if d.LoadedFor("ocr") != 1 || len(proc.insts) != 3 {
		t.Fatalf("after foreign starts: LoadedFor = %d, workers = %d; want 1 and 3", d.LoadedFor("ocr"), len(proc.insts))
	}
	again := startFn(t, d, "ocr", "/m")
	if len(proc.insts) != 3 {
		t.Errorf("workers started = %d, want 3: the loaded one is taken back", len(proc.insts))
	}
	if ph := again.Phases(); len(ph) == 0 || ph[0].Name != PhasePoolHit {
		t.Errorf("phases = %v, want %s first", ph, PhasePoolHit)
	}
	if stopped(proc.insts[0]) {
		t.Error("the loaded worker was stopped, want it serving again")
	}
	checkEvents(t, rec.list(), []string{"ocr ocr~loaded-1 →loaded", "ocr ocr~loaded-1 loaded→"})
}

// The pool holds at most Loaded workers: the oldest is stopped, and its
// accounting closed, when another is parked.
func TestLoadedPoolEvictsOldest(t *testing.T) {
	d, proc, rec := newLoaded(t, 2)
	for _, fn := range []string{"a", "b", "c"} {
		if !park(t, startFn(t, d, fn, "/m"), time.Hour) {
			t.Fatalf("Park %s = false", fn)
		}
	}
	waitFor(t, "the oldest stopped", func() bool { return stopped(proc.insts[0]) })
	if d.LoadedFor("a") != 0 || d.LoadedFor("b") != 1 || d.LoadedFor("c") != 1 {
		t.Errorf("loaded a/b/c = %d/%d/%d, want 0/1/1", d.LoadedFor("a"), d.LoadedFor("b"), d.LoadedFor("c"))
	}
	waitFor(t, "a's accounting closed", func() bool { return len(rec.list()) == 4 })
	checkEvents(t, rec.list(), []string{"a a~loaded-1 →loaded", "b b~loaded-2 →loaded", "c c~loaded-3 →loaded", "a a~loaded-1 loaded→"})
}

// A budget stop, redeploy or delete (Release) and the end of the keep-warm
// window both stop the worker and close its accounting.
func TestLoadedWorkerReleasedAndExpired(t *testing.T) {
	d, proc, rec := newLoaded(t, 4)
	park(t, startFn(t, d, "budget", "/m"), time.Hour)
	park(t, startFn(t, d, "window", "/m"), time.Millisecond)
	d.Release("budget")
	waitFor(t, "released worker stopped", func() bool { return stopped(proc.insts[0]) })
	waitFor(t, "expired worker stopped", func() bool { return stopped(proc.insts[1]) })
	if d.LoadedFor("budget")+d.LoadedFor("window") != 0 {
		t.Error("released or expired workers still loaded")
	}
	waitFor(t, "accounting closed", func() bool { return len(rec.list()) == 4 })
	closed := map[string]bool{}
	for _, e := range rec.list()[2:] {
		closed[e] = true
	}
	if !closed["budget budget~loaded-1 loaded→"] || !closed["window window~loaded-2 loaded→"] {
		t.Errorf("events = %q, want both closed", rec.list())
	}
	if startFn(t, d, "budget", "/m"); len(proc.insts) != 3 {
		t.Error("a released function's next start did not start a fresh worker")
	}
}

// With the loaded pool off, or for a worker that died, nothing is kept.
func TestLoadedPoolOffOrDeadWorker(t *testing.T) {
	d, _, _ := newLoaded(t, 0)
	if park(t, startFn(t, d, "ocr", "/m"), time.Hour) {
		t.Error("Park with Loaded 0 = true, want false")
	}
	d2, proc, _ := newLoaded(t, 2)
	in := startFn(t, d2, "ocr", "/m")
	proc.insts[0].Stop(context.Background())
	waitFor(t, "Done after exit", func() bool {
		select {
		case <-in.Done():
			return true
		default:
			return false
		}
	})
	if park(t, in, time.Hour) {
		t.Error("Park of an exited worker = true, want false")
	}
}
