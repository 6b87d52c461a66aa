package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
)

const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// PutFunction creates or replaces the spec of name, bumping its version.
func (s *DB) PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Function, bool, error) {
	r, err := s.put(ctx, functionsTable, name, specJSON, now)
	if err != nil {
		return api.Function{}, false, err
	}
	fn, err := record(name, string(specJSON), r.version, r.created, r.updated)
	return fn, r.isNew, err
}

// DeleteFunction removes name; existed is false when it was not stored.
func (s *DB) DeleteFunction(ctx context.Context, name string) (bool, error) {
	return s.remove(ctx, functionsTable, name)
}

// ListFunctions returns every stored function by name.
func (s *DB) ListFunctions(ctx context.Context) ([]api.Function, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT name, spec, version, created_at, updated_at FROM functions ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Function
	for rows.Next() {
		var name, spec, created, updated string
		var version int64
		if err := rows.Scan(&name, &spec, &version, &created, &updated); err != nil {
			return nil, err
		}
		fn, err := record(name, spec, version, created, updated)
		if err != nil {
			return nil, err
		}
		out = append(out, fn)
	}
	return out, rows.Err()
}

func record(name, spec string, version int64, created, updated string) (api.Function, error) {
	c, err := time.Parse(timeFormat, created)
	if err != nil {
		return api.Function{}, fmt.Errorf("function %q: bad created_at: %w", name, err)
	}
	u, err := time.Parse(timeFormat, updated)
	if err != nil {
		return api.Function{}, fmt.Errorf("function %q: bad updated_at: %w", name, err)
	}
	var runtime string
	var probe struct {
		Runtime string `json:"runtime"`
	}
	if json.Unmarshal([]byte(spec), &probe) == nil {
		runtime = probe.Runtime
	}
	return api.Function{Name: name, Spec: json.RawMessage(spec), Runtime: runtime, Version: version, CreatedAt: c, UpdatedAt: u}, nil
}

// FunctionVersions returns name's deploy history, newest first, at most
// limit entries (api.FunctionVersionsKept are kept).
func (s *DB) FunctionVersions(ctx context.Context, name string, limit int) ([]api.FunctionVersion, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT version, spec, deployed_at, deployed_by FROM function_versions
		WHERE name = ? ORDER BY version DESC LIMIT ?`, name, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("read history of function %q: %w", name, err)
	}
	defer rows.Close()
	var out []api.FunctionVersion
	for rows.Next() {
		v := api.FunctionVersion{Name: name}
		var spec, at string
		if err := rows.Scan(&v.Version, &spec, &at, &v.DeployedBy); err != nil {
			return nil, fmt.Errorf("read history of function %q: %w", name, err)
		}
		if v.DeployedAt, err = time.Parse(timeFormat, at); err != nil {
			return nil, fmt.Errorf("function %q version %d: bad deployed_at: %w", name, v.Version, err)
		}
		v.Spec = json.RawMessage(spec)
		out = append(out, v)
	}
	return out, rows.Err()
}
