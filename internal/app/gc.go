package app

import "runtime/debug"

// GCPercent is the garbage collector's target (GOGC) an `ember` process
// runs with when the environment sets none: a collection starts once the
// heap has grown by this percentage of what the last one left live.
//
// Go's default of 100 suits a program whose live heap is large next to
// what it allocates. A server's is the opposite: a few MB live (specs,
// keys, pools) and a small allocation per call, so at 100 its heap
// reaches its goal every few MB and a busy server collects over ten times
// a second, each cycle stopping the world twice and scanning every
// goroutine's stack. At 400 it collects about a third as often for a heap
// some 20 MB larger (bench/README.md, "tenth round").
const GCPercent = 400

// SetGCDefault sets the collector's target to GCPercent unless getenv
// finds GOGC set, which then wins as it does for any Go program (GOGC=100
// is Go's default, GOGC=off turns collection off). It reports whether it
// set the target. The setting is the whole process's, so the commands
// that run a server call it (ember serve, gateway, controller and demo,
// and the benches that host a server in-process), never Serve, which
// tests run many times in one process. Instances are left alone: `ember
// worker onnx` keeps Go's default, since its heap holds images and
// tensors and a function's memory limit counts it, and no instance
// inherits the server's GOGC (docs/runtime-contract.md).
func SetGCDefault(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}
