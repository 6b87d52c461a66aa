package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// PutSecret creates or replaces the secret name. created says which.
func (s *DB) PutSecret(ctx context.Context, name string, value []byte, now time.Time) (api.Secret, bool, error) {
	ts := now.UTC().Format(timeFormat)
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return api.Secret{}, false, err
	}
	defer tx.Rollback()
	var created string
	err = tx.QueryRowContext(ctx, `SELECT created_at FROM secrets WHERE name = ?`, name).Scan(&created)
	isNew := errors.Is(err, sql.ErrNoRows)
	if err != nil && !isNew {
		return api.Secret{}, false, fmt.Errorf("read secret %q: %w", name, err)
	}
	if isNew {
		created = ts
		_, err = tx.ExecContext(ctx, `INSERT INTO secrets(name, value, created_at, updated_at) VALUES (?, ?, ?, ?)`, name, value, ts, ts)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE secrets SET value = ?, updated_at = ? WHERE name = ?`, value, ts, name)
	}
	if err != nil {
		return api.Secret{}, false, fmt.Errorf("write secret %q: %w", name, err)
	}
	if err := logChange(ctx, tx, api.ChangeSecret, name, false, 0); err != nil {
		return api.Secret{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return api.Secret{}, false, fmt.Errorf("commit secret %q: %w", name, err)
	}
	rec, err := secretRecord(name, created, ts)
	return rec, isNew, err
}

// SecretValue returns the value of the secret name; ok is false when there
// is none.
func (s *DB) SecretValue(ctx context.Context, name string) ([]byte, bool, error) {
	var v []byte
	err := s.SQL.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read secret %q: %w", name, err)
	}
	return v, true, nil
}

// DeleteSecret removes name; existed is false when it was not stored.
func (s *DB) DeleteSecret(ctx context.Context, name string) (bool, error) {
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("delete secret %q: %w", name, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, name)
	if err != nil {
		return false, fmt.Errorf("delete secret %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if err := logChange(ctx, tx, api.ChangeSecret, name, true, 0); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("delete secret %q: %w", name, err)
	}
	return true, nil
}

// ListSecrets returns every secret's name and times by name, never a value.
func (s *DB) ListSecrets(ctx context.Context) ([]api.Secret, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT name, created_at, updated_at FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []api.Secret
	for rows.Next() {
		var name, created, updated string
		if err := rows.Scan(&name, &created, &updated); err != nil {
			return nil, err
		}
		rec, err := secretRecord(name, created, updated)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func secretRecord(name, created, updated string) (api.Secret, error) {
	c, err := time.Parse(timeFormat, created)
	if err != nil {
		return api.Secret{}, fmt.Errorf("secret %q: bad created_at: %w", name, err)
	}
	u, err := time.Parse(timeFormat, updated)
	if err != nil {
		return api.Secret{}, fmt.Errorf("secret %q: bad updated_at: %w", name, err)
	}
	return api.Secret{Name: name, CreatedAt: c, UpdatedAt: u}, nil
}
