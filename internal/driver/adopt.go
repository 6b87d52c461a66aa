package driver

import (
	"context"
	"errors"
	"fmt"
)

// Adopted is a listed instance that Reclaim took over.
type Adopted struct {
	Labels   Labels
	Instance Instance
}

// Reclaim finds the instances d started before (Lister) and takes them
// over (Adopter): those keep accepts — a deployed function's current
// version — are returned for the caller to register as ready instances
// (after a health check when d does not own readiness); the rest, left by
// a removed function or an older version, are stopped, so a restart
// neither starts what is already running nor leaks what is no longer
// wanted. A driver without both capabilities has nothing to reclaim (the
// process driver: its instances die with the server).
//
// An instance that cannot be adopted or stopped is reported in the joined
// error and the others are still handled.
func Reclaim(ctx context.Context, d Driver, keep func(Labels) bool) ([]Adopted, error) {
	lister, ok := d.(Lister)
	if !ok {
		return nil, nil
	}
	adopter, ok := d.(Adopter)
	if !ok {
		return nil, nil
	}
	listed, err := lister.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var kept []Adopted
	var errs []error
	for _, l := range listed {
		in, err := adopter.Adopt(ctx, l)
		if err != nil {
			errs = append(errs, fmt.Errorf("adopt %s (%s): %w", l.Labels.Instance, l.Handle, err))
			continue
		}
		if keep(l.Labels) {
			kept = append(kept, Adopted{Labels: l.Labels, Instance: in})
			continue
		}
		if err := in.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop leftover %s (%s): %w", l.Labels.Instance, l.Handle, err))
		}
	}
	return kept, errors.Join(errs...)
}
