package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
)

// versioned is a table of named JSON specs that carry a version bumped on
// every write: functions and routes. Its name is one of the constants
// below, never input, since it is spliced into the SQL.
type versioned string

const (
	functionsTable versioned = "functions"
	routesTable    versioned = "routes"
)

func (t versioned) kind() api.ChangeKind {
	if t == routesTable {
		return api.ChangeRoute
	}
	return api.ChangeFunction
}

// row is a versioned record as written.
type row struct {
	version          int64
	created, updated string
	isNew            bool
}

// put creates or replaces name's spec in t, bumping its version, and logs
// the change in the same transaction.
func (s *DB) put(ctx context.Context, t versioned, name string, specJSON []byte, now time.Time) (row, error) {
	kind := t.kind()
	ts := now.UTC().Format(timeFormat)
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return row{}, fmt.Errorf("write %s %q: %w", kind, name, err)
	}
	defer tx.Rollback()
	r := row{updated: ts}
	err = tx.QueryRowContext(ctx, `SELECT version, created_at FROM `+string(t)+` WHERE name = ?`, name).Scan(&r.version, &r.created)
	r.isNew = errors.Is(err, sql.ErrNoRows)
	if err != nil && !r.isNew {
		return row{}, fmt.Errorf("read %s %q: %w", kind, name, err)
	}
	if r.isNew {
		r.version, r.created = 1, ts
		_, err = tx.ExecContext(ctx, `INSERT INTO `+string(t)+`(name, spec, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)`, name, string(specJSON), ts, ts)
	} else {
		r.version++
		_, err = tx.ExecContext(ctx, `UPDATE `+string(t)+` SET spec = ?, version = ?, updated_at = ? WHERE name = ?`, string(specJSON), r.version, ts, name)
	}
	if err != nil {
		return row{}, fmt.Errorf("write %s %q: %w", kind, name, err)
	}
	if t == functionsTable {
		if err := addVersion(ctx, tx, name, r.version, specJSON, ts, deployer(ctx)); err != nil {
			return row{}, err
		}
	}
	if err := logChange(ctx, tx, kind, name, false, r.version); err != nil {
		return row{}, err
	}
	if err := tx.Commit(); err != nil {
		return row{}, fmt.Errorf("commit %s %q: %w", kind, name, err)
	}
	return r, nil
}

// remove deletes name from t and logs the change in the same
// transaction; existed is false (and nothing is logged) when it was not
// stored.
func (s *DB) remove(ctx context.Context, t versioned, name string) (bool, error) {
	kind := t.kind()
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("delete %s %q: %w", kind, name, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM `+string(t)+` WHERE name = ?`, name)
	if err != nil {
		return false, fmt.Errorf("delete %s %q: %w", kind, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	if t == functionsTable {
		// A function deployed again under the name starts at version 1.
		if _, err := tx.ExecContext(ctx, `DELETE FROM function_versions WHERE name = ?`, name); err != nil {
			return false, fmt.Errorf("delete history of %s %q: %w", kind, name, err)
		}
	}
	if err := logChange(ctx, tx, kind, name, true, 0); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit delete %s %q: %w", kind, name, err)
	}
	return true, nil
}

// deployer is the id of the key that makes the request in ctx, "" when
// none (no authentication, or a write at start-up).
func deployer(ctx context.Context) string {
	if p := auth.FromContext(ctx); p != nil {
		return p.KeyID
	}
	return ""
}

// addVersion records a function version in its deploy history and prunes
// the history to api.FunctionVersionsKept.
func addVersion(ctx context.Context, tx *sql.Tx, name string, version int64, specJSON []byte, ts, by string) error {
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO function_versions (name, version, spec, deployed_at, deployed_by) VALUES (?, ?, ?, ?, ?)`,
		name, version, string(specJSON), ts, by); err != nil {
		return fmt.Errorf("write history of function %q: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM function_versions WHERE name = ? AND version <= ?`, name, version-api.FunctionVersionsKept); err != nil {
		return fmt.Errorf("prune history of function %q: %w", name, err)
	}
	return nil
}
