package app

import (
	"context"
	"log/slog"

	"github.com/ember-run/ember/internal/api"
)

// follower applies store changes written by other store handles to this
// server's in-memory views. Each consumer re-reads what changed and
// compares versions, so a change this server made itself is a no-op.
type follower struct {
	functions func(ctx context.Context) error // controller.Sync
	routes    func(ctx context.Context) error // routing.Service.Sync
	keys      func(id string)                 // auth.Authenticator.Forget; nil without auth
	logger    *slog.Logger
}

// follow applies changes from ch until it is closed (the watch's ctx
// ended). Changes that arrive together are applied together, with one
// re-read per kind. A re-read that fails is logged; the next change of
// that kind reads everything again, so it is applied then.
func (f follower) follow(ctx context.Context, ch <-chan api.Change) error {
	for c := range ch {
		batch := []api.Change{c}
		open := true
	more:
		for open {
			select {
			case c, ok := <-ch:
				if !ok {
					open = false
					break more
				}
				batch = append(batch, c)
			default:
				break more
			}
		}
		f.apply(ctx, batch)
		if !open {
			break
		}
	}
	return nil
}

func (f follower) apply(ctx context.Context, batch []api.Change) {
	kinds := map[api.ChangeKind]bool{}
	for _, c := range batch {
		if c.Kind == "" { // the log was pruned past us: everything
			kinds[api.ChangeFunction], kinds[api.ChangeRoute] = true, true
			if f.keys != nil {
				f.keys("")
			}
			continue
		}
		kinds[c.Kind] = true
		if c.Kind == api.ChangeKey && f.keys != nil {
			f.keys(c.Name)
		}
	}
	if kinds[api.ChangeFunction] {
		if err := f.functions(ctx); err != nil && ctx.Err() == nil {
			f.logger.Error("applying function changes from the store", "err", err)
		}
	}
	if kinds[api.ChangeRoute] {
		if err := f.routes(ctx); err != nil && ctx.Err() == nil {
			f.logger.Error("applying route changes from the store", "err", err)
		}
	}
	// Secrets need nothing: they are read at each instance start and
	// routed call.
}
