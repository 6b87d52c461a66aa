package replicate

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/jobs"
)

// OwnedJobs is a job service that knows who created each job
// (*jobs.Service).
type OwnedJobs interface {
	Jobs
	// Owner returns the creator's key id ("" for none), or an error
	// wrapping jobs.ErrNotFound.
	Owner(ctx context.Context, id string) (string, error)
}

var _ OwnedJobs = (*jobs.Service)(nil)

// Authorize wraps j with the caller's rights, for a server with
// authentication on: a submit needs a key that covers the function and
// records the key as the job's owner; a prediction is visible (get, wait,
// cancel, stream, list) only to its owner and to admin keys — anyone else
// gets jobs.ErrNotFound (404), as for an id that does not exist, so an
// answer never names another tenant's function. Jobs without an owner
// (created before owners were recorded, or with auth off) are admin-only.
// The webhook signing secret needs admin. A request without a principal is
// refused (401).
func Authorize(j OwnedJobs) Jobs { return authorized{j} }

type authorized struct{ OwnedJobs }

func (a authorized) SubmitBatch(ctx context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error) {
	p := auth.FromContext(ctx)
	for i := range reqs {
		if err := auth.AllowFunction(p, reqs[i].Function); err != nil {
			return nil, err
		}
		reqs[i].Owner = p.KeyID
	}
	return a.OwnedJobs.SubmitBatch(ctx, reqs)
}

// visible returns nil if the caller may see prediction id.
func (a authorized) visible(ctx context.Context, id string) error {
	p := auth.FromContext(ctx)
	if p == nil {
		return auth.ErrMissingKey
	}
	if p.Has(auth.ScopeAdmin) {
		return nil
	}
	owner, err := a.Owner(ctx, id)
	if err != nil {
		return err
	}
	if owner == "" || owner != p.KeyID {
		return fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	return nil
}

func (a authorized) Get(ctx context.Context, id string) (*api.Prediction, error) {
	if err := a.visible(ctx, id); err != nil {
		return nil, err
	}
	return a.OwnedJobs.Get(ctx, id)
}

func (a authorized) Cancel(ctx context.Context, id string) (*api.Prediction, error) {
	if err := a.visible(ctx, id); err != nil {
		return nil, err
	}
	return a.OwnedJobs.Cancel(ctx, id)
}

func (a authorized) Wait(ctx context.Context, id string, d time.Duration) (*api.Prediction, error) {
	if err := a.visible(ctx, id); err != nil {
		return nil, err
	}
	return a.OwnedJobs.Wait(ctx, id, d)
}

// Subscribe also admits a request carrying a verified stream token for
// this prediction (see Handler.SetStreamTokens).
func (a authorized) Subscribe(ctx context.Context, id string, lastEventID int64) (*jobs.Stream, error) {
	if auth.StreamCapability(ctx, id) {
		return a.OwnedJobs.Subscribe(ctx, id, lastEventID)
	}
	if err := a.visible(ctx, id); err != nil {
		return nil, err
	}
	return a.OwnedJobs.Subscribe(ctx, id, lastEventID)
}

// List shows an admin everything and anyone else only their own jobs.
func (a authorized) List(ctx context.Context, o jobs.ListOptions) (*jobs.Page, error) {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil, auth.ErrMissingKey
	}
	if !p.Has(auth.ScopeAdmin) {
		o.Owner = p.KeyID
	}
	return a.OwnedJobs.List(ctx, o)
}

func (a authorized) WebhookSecret(ctx context.Context) (string, error) {
	if err := auth.Check(ctx, auth.ScopeAdmin); err != nil {
		return "", err
	}
	return a.OwnedJobs.WebhookSecret(ctx)
}

// InputValidator checks a function's input before a job is created
// (the container driver: a protocol cog function's input schema).
type InputValidator interface {
	// ValidateInput returns nil, or an error naming every input field at
	// fault; nil also when fn declares no schema.
	ValidateInput(fn string, input json.RawMessage) error
}

// ValidateInputs wraps j so that a submit whose input does not fit its
// function's declared schema is refused with 422 naming the fields,
// before any job exists: nothing is queued that could only fail. Wrap
// it in Authorize, so only callers who may run a function learn its inputs.
func ValidateInputs(j OwnedJobs, v InputValidator) OwnedJobs { return validated{j, v} }

type validated struct {
	OwnedJobs
	v InputValidator
}

func (x validated) SubmitBatch(ctx context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error) {
	for i, r := range reqs {
		if err := x.v.ValidateInput(r.Function, r.Input); err != nil {
			msg := err.Error()
			if len(reqs) > 1 {
				msg = fmt.Sprintf("inputs[%d]: %s", i, msg)
			}
			return nil, &errkind.Error{Kind: errkind.Unprocessable, Code: "invalid_input", Msg: msg, Err: err}
		}
	}
	return x.OwnedJobs.SubmitBatch(ctx, reqs)
}
