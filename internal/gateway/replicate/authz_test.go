package replicate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/gateway/replicate"
	"github.com/ember-run/ember/internal/jobs"
)

// ownedJobs is a job service with two jobs: "a1" created by key a, and
// "old" created before owners were recorded.
type ownedJobs struct {
	listed    jobs.ListOptions
	submitted []jobs.SubmitRequest
}

var owners = map[string]string{"a1": "a", "old": ""}

func (f *ownedJobs) Owner(_ context.Context, id string) (string, error) {
	o, ok := owners[id]
	if !ok {
		return "", fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	return o, nil
}

func (f *ownedJobs) SubmitBatch(_ context.Context, reqs []jobs.SubmitRequest) ([]*api.Prediction, error) {
	f.submitted = reqs
	return nil, nil
}
func (f *ownedJobs) Get(_ context.Context, id string) (*api.Prediction, error) {
	return &api.Prediction{ID: id}, nil
}
func (f *ownedJobs) List(_ context.Context, o jobs.ListOptions) (*jobs.Page, error) {
	f.listed = o
	return &jobs.Page{}, nil
}
func (f *ownedJobs) Cancel(_ context.Context, id string) (*api.Prediction, error) {
	return &api.Prediction{ID: id}, nil
}
func (f *ownedJobs) Wait(_ context.Context, id string, _ time.Duration) (*api.Prediction, error) {
	return &api.Prediction{ID: id}, nil
}
func (f *ownedJobs) Subscribe(context.Context, string, int64) (*jobs.Stream, error) {
	return nil, nil
}
func (f *ownedJobs) WebhookSecret(context.Context) (string, error) { return "s", nil }

func TestAuthorizeOwnership(t *testing.T) {
	admin := &auth.Principal{KeyID: "root", Name: "root", Scope: auth.ScopeAdmin}
	alice := &auth.Principal{KeyID: "a", Name: "alice", Scope: auth.ScopeInvoke, Functions: []string{"mine"}}
	bob := &auth.Principal{KeyID: "b", Name: "bob", Scope: auth.ScopeInvoke, Functions: []string{"mine"}}
	tests := []struct {
		name string
		p    *auth.Principal
		id   string
		want error // nil, jobs.ErrNotFound or auth.ErrMissingKey
	}{
		{"owner", alice, "a1", nil},
		{"admin sees another key's job", admin, "a1", nil},
		{"another key with the same function", bob, "a1", jobs.ErrNotFound},
		{"job without an owner, invoke key", alice, "old", jobs.ErrNotFound},
		{"job without an owner, admin", admin, "old", nil},
		{"unknown id", alice, "nope", jobs.ErrNotFound},
		{"no principal", nil, "a1", auth.ErrMissingKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := replicate.Authorize(&ownedJobs{})
			ctx := context.Background()
			if tc.p != nil {
				ctx = auth.NewContext(ctx, tc.p)
			}
			ops := map[string]func() error{
				"get":    func() error { _, err := j.Get(ctx, tc.id); return err },
				"wait":   func() error { _, err := j.Wait(ctx, tc.id, time.Second); return err },
				"cancel": func() error { _, err := j.Cancel(ctx, tc.id); return err },
				"stream": func() error { _, err := j.Subscribe(ctx, tc.id, 0); return err },
			}
			for op, f := range ops {
				err := f()
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("%s(%s) = %v, want %v", op, tc.id, err, tc.want)
				}
				if err != nil && errors.Is(tc.want, jobs.ErrNotFound) && err.Error() != fmt.Sprintf("%s: %s", jobs.ErrNotFound, tc.id) {
					t.Errorf("%s(%s) error %q says more than an unknown id would", op, tc.id, err)
				}
			}
		})
	}
}

func TestAuthorizeListAndSubmit(t *testing.T) {
	admin := &auth.Principal{KeyID: "root", Scope: auth.ScopeAdmin}
	alice := &auth.Principal{KeyID: "a", Name: "alice", Scope: auth.ScopeInvoke, Functions: []string{"mine"}}
	for _, tc := range []struct {
		p         *auth.Principal
		wantOwner string
	}{{admin, ""}, {alice, "a"}} {
		f := &ownedJobs{}
		ctx := auth.NewContext(context.Background(), tc.p)
		if _, err := replicate.Authorize(f).List(ctx, jobs.ListOptions{Function: "mine"}); err != nil {
			t.Fatal(err)
		}
		if f.listed.Owner != tc.wantOwner || f.listed.Function != "mine" {
			t.Errorf("%s lists with %+v, want owner %q and function mine", tc.p.KeyID, f.listed, tc.wantOwner)
		}
	}

	f := &ownedJobs{}
	ctx := auth.NewContext(context.Background(), alice)
	if _, err := replicate.Authorize(f).SubmitBatch(ctx, []jobs.SubmitRequest{{Function: "mine"}}); err != nil {
		t.Fatal(err)
	}
	if got := f.submitted[0].Owner; got != "a" {
		t.Errorf("submitted owner = %q, want the key id a", got)
	}
	var ae *auth.Error
	if _, err := replicate.Authorize(f).SubmitBatch(ctx, []jobs.SubmitRequest{{Function: "other"}}); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("submit to an uncovered function = %v, want a 403 auth error", err)
	}
	if _, err := replicate.Authorize(f).WebhookSecret(ctx); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("webhook secret with an invoke key = %v, want 403", err)
	}
}

// fieldValidator refuses any input that mentions "bad", for function m.
type fieldValidator struct{}

func (fieldValidator) ValidateInput(fn string, input json.RawMessage) error {
	if fn == "m" && strings.Contains(string(input), "bad") {
		return errors.New("invalid input: input.x: bad")
	}
	return nil
}

func TestValidateInputs(t *testing.T) {
	tests := []struct {
		name    string
		inputs  []string
		wantErr string // "" = submitted
	}{
		{"fits", []string{`{"x":1}`}, ""},
		{"one refused", []string{`{"x":"bad"}`}, "invalid input: input.x: bad"},
		{"batch names the index", []string{`{"x":1}`, `{"x":"bad"}`}, "inputs[1]: invalid input: input.x: bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &ownedJobs{}
			j := replicate.ValidateInputs(inner, fieldValidator{})
			var reqs []jobs.SubmitRequest
			for _, in := range tc.inputs {
				reqs = append(reqs, jobs.SubmitRequest{Function: "m", Input: json.RawMessage(in)})
			}
			_, err := j.SubmitBatch(context.Background(), reqs)
			if tc.wantErr == "" {
				if err != nil || len(inner.submitted) != len(reqs) {
					t.Fatalf("SubmitBatch = %v, submitted %d; want all submitted", err, len(inner.submitted))
				}
				return
			}
			var ke *errkind.Error
			if !errors.As(err, &ke) || ke.Kind != errkind.Unprocessable || ke.Msg != tc.wantErr {
				t.Fatalf("SubmitBatch err = %#v, want a 422 %q", err, tc.wantErr)
			}
			if inner.submitted != nil {
				t.Errorf("refused batch reached the job service: %v", inner.submitted)
			}
			if got := ke.Kind.Status(); got != 422 {
				t.Errorf("status = %d, want 422", got)
			}
		})
	}
}
