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

const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// PutFunction creates or replaces the spec of name, bumping its version.
func (s *DB) PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Function, bool, error) {
	ts := now.UTC().Format(timeFormat)
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return api.Function{}, false, err
	}
	defer tx.Rollback()
	var version int64
	var created string
	err = tx.QueryRowContext(ctx, `SELECT version, created_at FROM functions WHERE name = ?`, name).Scan(&version, &created)
	isNew := errors.Is(err, sql.ErrNoRows)
	if err != nil && !isNew {
		return api.Function{}, false, fmt.Errorf("read function: %w", err)
	}
	if isNew {
		version, created = 1, ts
		_, err = tx.ExecContext(ctx, `INSERT INTO functions(name, spec, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)`, name, string(specJSON), ts, ts)
	} else {
		version++
		_, err = tx.ExecContext(ctx, `UPDATE functions SET spec = ?, version = ?, updated_at = ? WHERE name = ?`, string(specJSON), version, ts, name)
	}
	if err != nil {
		return api.Function{}, false, fmt.Errorf("write function: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return api.Function{}, false, fmt.Errorf("commit function: %w", err)
	}
	fn, err := record(name, string(specJSON), version, created, ts)
	return fn, isNew, err
}

// DeleteFunction removes name; existed is false when it was not stored.
func (s *DB) DeleteFunction(ctx context.Context, name string) (bool, error) {
	res, err := s.SQL.ExecContext(ctx, `DELETE FROM functions WHERE name = ?`, name)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
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
