package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/spec"
)

// jobInvoker sends a job's request through the activator, so async work
// queues and scales functions from zero exactly as sync calls do.
type jobInvoker struct {
	act    *activator.Activator
	client *http.Client
}

func (j *jobInvoker) Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(coldStart bool), handle func(*http.Response) error) error {
	err := j.act.Try(ctx, fn, func(s activator.Slot) error {
		if onAcquire != nil {
			onAcquire(s.Cold)
		}
		out := r.Clone(ctx)
		out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", s.Addr, s.Addr, ""
		resp, err := j.client.Do(out)
		if err != nil {
			return &proxy.UpstreamError{Addr: s.Addr, Err: err}
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

// authorizedJobs checks the caller's key before each job operation: invoke
// rights on the job's function, admin scope for listing everything and for
// the webhook secret. With auth off it passes everything through.
type authorizedJobs struct {
	*jobs.Service
	on bool
}

func (a authorizedJobs) SubmitBatch(ctx context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error) {
	if a.on {
		p := auth.FromContext(ctx)
		for i, r := range reqs {
			if err := auth.AllowFunction(p, r.Function); err != nil {
				return nil, err
			}
			if p != nil {
				reqs[i].Owner = p.KeyID
			}
		}
	}
	return a.Service.SubmitBatch(ctx, reqs)
}

func (a authorizedJobs) check(ctx context.Context, id string) error {
	if !a.on {
		return nil
	}
	p, err := a.Service.Get(ctx, id)
	if err != nil {
		return err
	}
	return auth.AllowFunction(auth.FromContext(ctx), p.Model)
}

func (a authorizedJobs) Get(ctx context.Context, id string) (*api.Prediction, error) {
	if err := a.check(ctx, id); err != nil {
		return nil, err
	}
	return a.Service.Get(ctx, id)
}

func (a authorizedJobs) Cancel(ctx context.Context, id string) (*api.Prediction, error) {
	if err := a.check(ctx, id); err != nil {
		return nil, err
	}
	return a.Service.Cancel(ctx, id)
}

func (a authorizedJobs) Wait(ctx context.Context, id string, d time.Duration) (*api.Prediction, error) {
	if err := a.check(ctx, id); err != nil {
		return nil, err
	}
	return a.Service.Wait(ctx, id, d)
}

// Subscribe also admits a request that carries a verified stream token for
// this prediction (see streamTokenAuth): the one right such a token grants.
func (a authorizedJobs) Subscribe(ctx context.Context, id string, lastEventID int64) (*jobs.Stream, error) {
	if auth.StreamCapability(ctx, id) {
		return a.Service.Subscribe(ctx, id, lastEventID)
	}
	if err := a.check(ctx, id); err != nil {
		return nil, err
	}
	return a.Service.Subscribe(ctx, id, lastEventID)
}

func (a authorizedJobs) List(ctx context.Context, o jobs.ListOptions) (*jobs.Page, error) {
	if a.on {
		p := auth.FromContext(ctx)
		if o.Function == "" {
			if err := auth.Check(ctx, auth.ScopeAdmin); err != nil {
				return nil, err
			}
		} else if err := auth.AllowFunction(p, o.Function); err != nil {
			return nil, err
		}
	}
	return a.Service.List(ctx, o)
}

func (a authorizedJobs) WebhookSecret(ctx context.Context) (string, error) {
	if a.on {
		if err := auth.Check(ctx, auth.ScopeAdmin); err != nil {
			return "", err
		}
	}
	return a.Service.WebhookSecret(ctx)
}
