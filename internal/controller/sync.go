package controller

import (
	"context"
	"fmt"

	"github.com/ember-run/ember/internal/spec"
)

// Sync brings the deployed functions in line with the store after it
// changed behind this controller's back (a deploy, update or delete by
// another server on the same store, reported by a store watch). It reads
// every stored function: one whose stored version (and creation time, as
// a delete and re-create restarts the version) differs from the local one
// is installed and provisioned; one gone from the store is removed, its
// instances draining within ctx. A function this controller deployed
// itself is already installed at its stored version, so a change it made
// is never applied twice. Sync is level-triggered: calling it again, or
// for a change already seen, does nothing.
func (c *Controller) Sync(ctx context.Context) error {
	// applyMu orders Sync with Deploy and Delete, each of which writes the
	// store and then the registry: a Sync that listed before a Deploy
	// committed must not install its older version after it.
	c.applyMu.Lock()
	recs, err := c.store.ListFunctions(ctx)
	if err != nil {
		c.applyMu.Unlock()
		return fmt.Errorf("sync functions: %w", err)
	}
	stored := make(map[string]bool, len(recs))
	var changed []string
	for _, rec := range recs {
		stored[rec.Name] = true
		c.mu.Lock()
		fn := c.funcs[rec.Name]
		same := fn != nil && fn.rec.Version == rec.Version && fn.rec.CreatedAt.Equal(rec.CreatedAt)
		c.mu.Unlock()
		if same {
			continue
		}
		f, err := spec.Parse(rec.Spec)
		if err != nil {
			c.logger.Error("stored spec not valid; not applied", "function", rec.Name, "version", rec.Version, "err", err)
			continue
		}
		c.install(rec, f)
		changed = append(changed, rec.Name)
		c.logger.Info("function changed in the store; applied", "function", rec.Name, "version", rec.Version)
	}
	var gone []string
	c.mu.Lock()
	for name := range c.funcs {
		if !stored[name] {
			gone = append(gone, name)
			delete(c.funcs, name)
		}
	}
	c.mu.Unlock()
	c.applyMu.Unlock()

	for _, name := range gone {
		// As Delete: waiters hear "unknown function" at once.
		c.demand.Forget(name)
		c.scaler.Remove(ctx, name)
		c.demand.Forget(name)
		c.logger.Info("function removed from the store; removed", "function", name)
	}
	for _, name := range changed {
		var f *spec.Function
		c.mu.Lock()
		if fn := c.funcs[name]; fn != nil {
			f = fn.spec
		}
		c.mu.Unlock()
		if f == nil {
			continue
		}
		// What Deploy fetched on the server that stored it (models,
		// runtimes) this server needs too; until it has them a start fails
		// and backs off.
		if c.opts.Prepare != nil {
			if err := c.opts.Prepare(ctx, f); err != nil {
				c.logger.Error("cannot prepare a function deployed elsewhere; its starts will fail until it can", "function", name, "err", err)
			}
		}
		c.tickOne(name, c.now())
	}
	return nil
}
