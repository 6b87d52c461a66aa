package routing

import (
	"context"
	"fmt"

	"github.com/ember-run/ember/internal/route"
)

// Sync brings the route table in line with the store after it
// changed behind this server's back (a route applied or removed by
// another server on the same store, reported by a store watch). A route
// whose stored version (or creation time: a re-created route starts at
// version 1 again) differs from the table's is installed, keeping its
// traffic window as a re-apply does; a route gone from the store leaves
// the table. A route this server applied is already in the table at its
// stored version, so it is never applied twice.
func (s *Service) Sync(ctx context.Context) error {
	// applyMu orders this with applyRoute and deleteRoute (store, then
	// table), so an older listing never overwrites a newer apply.
	s.tab.applyMu.Lock()
	defer s.tab.applyMu.Unlock()
	recs, err := s.store.ListRoutes(ctx)
	if err != nil {
		return fmt.Errorf("sync routes: %w", err)
	}
	now := s.now()
	stored := make(map[string]bool, len(recs))
	for _, rec := range recs {
		stored[rec.Name] = true
		if lr := s.tab.get(rec.Name); lr != nil {
			lr.mu.Lock()
			same := lr.rec.Version == rec.Version && lr.rec.CreatedAt.Equal(rec.CreatedAt)
			lr.mu.Unlock()
			if same {
				continue
			}
		}
		rt, err := route.Parse(rec.Spec)
		if err != nil {
			s.logger.Error("stored route not valid; not applied", "route", rec.Name, "version", rec.Version, "err", err)
			continue
		}
		s.tab.put(rt, rec, now)
		s.logger.Info("route changed in the store; applied", "route", rec.Name, "version", rec.Version)
	}
	for _, name := range s.tab.names() {
		if !stored[name] {
			s.tab.remove(name)
			s.logger.Info("route removed from the store; removed", "route", name)
		}
	}
	return nil
}
