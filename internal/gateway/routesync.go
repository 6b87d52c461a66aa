package gateway

import (
	"context"
	"fmt"

	"github.com/ember-run/ember/internal/route"
)

// SyncRoutes brings the route table in line with the store after it
// changed behind this gateway's back (a route applied or removed by
// another server on the same store, reported by a store watch). A route
// whose stored version (or creation time: a re-created route starts at
// version 1 again) differs from the table's is installed, keeping its
// traffic window as a re-apply does; a route gone from the store leaves
// the table. A route this gateway applied is already in the table at its
// stored version, so it is never applied twice. Before EnableRoutes it
// does nothing.
func (g *Gateway) SyncRoutes(ctx context.Context) error {
	if g.routeStore == nil {
		return nil
	}
	// applyMu orders this with applyRoute and deleteRoute (store, then
	// table), so an older listing never overwrites a newer apply.
	g.routeTab.applyMu.Lock()
	defer g.routeTab.applyMu.Unlock()
	recs, err := g.routeStore.ListRoutes(ctx)
	if err != nil {
		return fmt.Errorf("sync routes: %w", err)
	}
	now := g.now()
	stored := make(map[string]bool, len(recs))
	for _, rec := range recs {
		stored[rec.Name] = true
		if lr := g.routeTab.get(rec.Name); lr != nil {
			lr.mu.Lock()
			same := lr.rec.Version == rec.Version && lr.rec.CreatedAt.Equal(rec.CreatedAt)
			lr.mu.Unlock()
			if same {
				continue
			}
		}
		rt, err := route.Parse(rec.Spec)
		if err != nil {
			g.logger.Error("stored route not valid; not applied", "route", rec.Name, "version", rec.Version, "err", err)
			continue
		}
		g.routeTab.put(rt, rec, now)
		g.logger.Info("route changed in the store; applied", "route", rec.Name, "version", rec.Version)
	}
	for _, name := range g.routeTab.names() {
		if !stored[name] {
			g.routeTab.remove(name)
			g.logger.Info("route removed from the store; removed", "route", name)
		}
	}
	return nil
}
