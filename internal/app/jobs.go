package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/spec"
)

// jobInvoker sends a job's request through the activator, so async work
// queues and scales functions from zero exactly as sync calls do.
type jobInvoker struct {
	act *activator.Activator
	px  *proxy.Proxy
}

func (j *jobInvoker) Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(coldStart bool), handle func(*http.Response) error) error {
	err := j.act.Try(ctx, fn, func(s activator.Slot) error {
		if onAcquire != nil {
			onAcquire(s.Cold)
		}
		resp, err := j.px.Do(ctx, s.Addr, r)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return handle(resp)
	})
	switch {
	case errors.Is(err, activator.ErrQueueFull):
		return fmt.Errorf("%w: %w", jobs.ErrQueueFull, err)
	case errors.Is(err, activator.ErrUnknownFunction):
		return fmt.Errorf("%w: %w", jobs.ErrUnknownFunction, err)
	}
	return err
}

// jobFunctions looks up specs for the job service.
type jobFunctions struct{ mgr *instance.Manager }

func (f jobFunctions) Function(ctx context.Context, name string) (*spec.Function, error) {
	if fn, ok := f.mgr.Function(name); ok {
		return fn, nil
	}
	return nil, fmt.Errorf("%w %q", jobs.ErrUnknownFunction, name)
}
