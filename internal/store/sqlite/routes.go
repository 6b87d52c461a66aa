package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// ErrRouteNotFound is returned by Route for an unknown name.
var ErrRouteNotFound = errors.New("sqlite: route not found")

// PutRoute creates or replaces the route name (specJSON is the JSON of a
// validated route.Route), bumping its version. created says which.
func (s *DB) PutRoute(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Route, bool, error) {
	r, err := s.put(ctx, routesTable, name, specJSON, now)
	if err != nil {
		return api.Route{}, false, err
	}
	rec, err := routeRecord(name, string(specJSON), r.version, r.created, r.updated)
	return rec, r.isNew, err
}

// Route returns one stored route or ErrRouteNotFound.
func (s *DB) Route(ctx context.Context, name string) (api.Route, error) {
	var spec, created, updated string
	var version int64
	err := s.SQL.QueryRowContext(ctx, `SELECT spec, version, created_at, updated_at FROM routes WHERE name = ?`, name).Scan(&spec, &version, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return api.Route{}, fmt.Errorf("route %q: %w", name, ErrRouteNotFound)
	}
	if err != nil {
		return api.Route{}, fmt.Errorf("read route %q: %w", name, err)
	}
	return routeRecord(name, spec, version, created, updated)
}

// DeleteRoute removes name; existed is false when it was not stored.
func (s *DB) DeleteRoute(ctx context.Context, name string) (bool, error) {
	return s.remove(ctx, routesTable, name)
}

// ListRoutes returns every stored route by name.
func (s *DB) ListRoutes(ctx context.Context) ([]api.Route, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT name, spec, version, created_at, updated_at FROM routes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	defer rows.Close()
	var out []api.Route
	for rows.Next() {
		var name, spec, created, updated string
		var version int64
		if err := rows.Scan(&name, &spec, &version, &created, &updated); err != nil {
			return nil, err
		}
		r, err := routeRecord(name, spec, version, created, updated)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func routeRecord(name, spec string, version int64, created, updated string) (api.Route, error) {
	c, err := time.Parse(timeFormat, created)
	if err != nil {
		return api.Route{}, fmt.Errorf("route %q: bad created_at: %w", name, err)
	}
	u, err := time.Parse(timeFormat, updated)
	if err != nil {
		return api.Route{}, fmt.Errorf("route %q: bad updated_at: %w", name, err)
	}
	return api.Route{Name: name, Spec: json.RawMessage(spec), Version: version, CreatedAt: c, UpdatedAt: u}, nil
}
