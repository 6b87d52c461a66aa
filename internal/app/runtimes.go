package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/onnx"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/models"
	"github.com/ember-run/ember/internal/spec"
)

// runtimes dispatches starts to the driver of each spec runtime.
type runtimes struct {
	process *process.Driver
	onnx    *onnx.Driver
}

func (r *runtimes) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	switch s.Runtime {
	case spec.RuntimeONNX:
		return r.onnx.Start(ctx, s)
	case spec.RuntimeProcess, "":
		return r.process.Start(ctx, s)
	}
	return nil, &driver.StartError{Reason: fmt.Sprintf("unknown runtime %q", s.Runtime)}
}

var _ driver.Driver = (*runtimes)(nil)

// newRuntimes builds the drivers. Instances start from a minimal
// environment (process.BaseEnv plus --inherit-env), never the server's
// whole one, and read the secrets their specs name from secrets.
func newRuntimes(cfg config.Config, logger *slog.Logger, guard *process.Guard, secrets process.SecretSource) (*runtimes, error) {
	proc := process.New(logger.With("component", "driver"), process.Options{Guard: guard,
		Env: process.BaseEnv(os.Environ(), cfg.InheritEnv), Secrets: secrets})
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate the ember binary for onnx workers: %w", err)
	}
	on := onnx.New(proc, logger.With("component", "onnx"), onnx.Options{
		Executable: exe, CacheDir: cfg.Cache(), ORTLib: cfg.ORTLib, PoolSize: cfg.ONNXPool,
		Threads: cfg.ONNXThreads,
	})
	return &runtimes{process: proc, onnx: on}, nil
}

// preparer fetches an onnx function's model and the ONNX Runtime library
// at deploy, so no cold start pays for a download, then warms the pool.
type preparer struct {
	cfg    config.Config
	rt     *runtimes
	logger *slog.Logger
	mu     sync.Mutex // one download at a time
}

func (p *preparer) Prepare(ctx context.Context, f *spec.Function) error {
	if f.Runtime != spec.RuntimeONNX {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	progress := &logWriter{logger: p.logger.With("function", f.Name)}
	c := &models.Client{}
	if _, err := c.RuntimeLibrary(ctx, p.cfg.Cache(), p.cfg.ORTLib, progress); err != nil {
		return fmt.Errorf("onnx runtime: %w", err)
	}
	if _, err := c.Pull(ctx, f.Model, p.cfg.Cache(), progress); err != nil {
		return fmt.Errorf("model %s: %w", f.Model, err)
	}
	p.rt.onnx.Warm()
	return nil
}

// logWriter turns progress lines into log records.
type logWriter struct {
	logger *slog.Logger
}

func (w *logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			w.logger.Info("fetch", "progress", line)
		}
	}
	return len(b), nil
}

var _ io.Writer = (*logWriter)(nil)

// startGuard starts the helper that kills instances' process groups if the
// server dies (process.Guard); nil, with a warning, when there is none.
func startGuard(cfg config.Config, logger *slog.Logger) *process.Guard {
	if len(cfg.GuardCommand) == 0 {
		return nil
	}
	g, err := process.StartGuard(cfg.GuardCommand, logger.With("component", "guard"))
	if err != nil {
		logger.Warn("no instance guard: if the server is killed, processes that instances started may outlive it (the instances themselves still die)", "err", err)
		return nil
	}
	return g
}

// RunGuard is `ember worker guard`: the helper's side of process.Guard.
func RunGuard(stdin io.Reader) error {
	process.IgnoreStopSignals()
	return process.RunGuard(stdin, process.KillGroup)
}
