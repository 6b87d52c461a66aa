package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
)

// CreateKey stores a new key record (its hash, never the key).
func (s *DB) CreateKey(ctx context.Context, k auth.Key) error {
	fns, err := json.Marshal(keyFunctions(k.Functions))
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO api_keys(id, name, hash, scope, functions, rate_per_sec, burst, max_concurrency, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Hash, string(k.Scope), string(fns), k.RatePerSec, k.Burst, k.MaxConcurrency,
		k.CreatedAt.UTC().Format(timeFormat), keyTimeArg(k.ExpiresAt), keyTimeArg(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	if err := logChange(ctx, tx, api.ChangeKey, k.ID, false, 0); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create key %s: %w", k.ID, err)
	}
	return nil
}

var _ auth.KeyEnsurer = (*DB)(nil)

// EnsureKey stores k unless a key with its id exists (auth.KeyEnsurer):
// INSERT … ON CONFLICT DO NOTHING in one statement, so handles
// bootstrapping the same key at once neither fail nor duplicate it.
func (s *DB) EnsureKey(ctx context.Context, k auth.Key) (created bool, err error) {
	fns, err := json.Marshal(keyFunctions(k.Functions))
	if err != nil {
		return false, fmt.Errorf("ensure key: %w", err)
	}
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ensure key %s: %w", k.ID, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO api_keys(id, name, hash, scope, functions, rate_per_sec, burst, max_concurrency, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		k.ID, k.Name, k.Hash, string(k.Scope), string(fns), k.RatePerSec, k.Burst, k.MaxConcurrency,
		k.CreatedAt.UTC().Format(timeFormat), keyTimeArg(k.ExpiresAt), keyTimeArg(k.RevokedAt))
	if err != nil {
		return false, fmt.Errorf("ensure key %s: %w", k.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("ensure key %s: %w", k.ID, err)
	}
	if n == 0 {
		return false, nil
	}
	if err := logChange(ctx, tx, api.ChangeKey, k.ID, false, 0); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ensure key %s: %w", k.ID, err)
	}
	return true, nil
}

const keyColumns = `id, name, hash, scope, functions, rate_per_sec, burst, max_concurrency, created_at, expires_at, revoked_at`

// KeyByID returns the key with id, or auth.ErrNotFound.
func (s *DB) KeyByID(ctx context.Context, id string) (auth.Key, error) {
	k, err := scanKey(s.SQL.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.Key{}, fmt.Errorf("key %s: %w", id, auth.ErrNotFound)
	}
	return k, err
}

// ListKeys returns every key, revoked ones included, oldest first.
func (s *DB) ListKeys(ctx context.Context) ([]auth.Key, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []auth.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey marks id revoked at at; a second revoke keeps the first time.
func (s *DB) RevokeKey(ctx context.Context, id string, at time.Time) error {
	tx, err := s.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		at.UTC().Format(timeFormat), id)
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("revoke key %s: %w", id, auth.ErrNotFound)
	}
	// Announced so that other servers drop the key from their caches now
	// rather than after auth's cache TTL.
	if err := logChange(ctx, tx, api.ChangeKey, id, false, 0); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	return nil
}

type keyRow interface{ Scan(dest ...any) error }

func scanKey(row keyRow) (auth.Key, error) {
	var k auth.Key
	var scope, fns, created string
	var expires, revoked sql.NullString
	if err := row.Scan(&k.ID, &k.Name, &k.Hash, &scope, &fns, &k.RatePerSec, &k.Burst, &k.MaxConcurrency, &created, &expires, &revoked); err != nil {
		return auth.Key{}, err
	}
	k.Scope = auth.Scope(scope)
	if err := json.Unmarshal([]byte(fns), &k.Functions); err != nil {
		return auth.Key{}, fmt.Errorf("key %s: bad functions: %w", k.ID, err)
	}
	if len(k.Functions) == 0 {
		k.Functions = nil
	}
	var err error
	if k.CreatedAt, err = time.Parse(timeFormat, created); err != nil {
		return auth.Key{}, fmt.Errorf("key %s: bad created_at: %w", k.ID, err)
	}
	if k.ExpiresAt, err = keyParseTime(expires); err != nil {
		return auth.Key{}, fmt.Errorf("key %s: bad expires_at: %w", k.ID, err)
	}
	if k.RevokedAt, err = keyParseTime(revoked); err != nil {
		return auth.Key{}, fmt.Errorf("key %s: bad revoked_at: %w", k.ID, err)
	}
	return k, nil
}

func keyFunctions(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func keyTimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeFormat)
}

func keyParseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return time.Parse(timeFormat, s.String)
}

var _ auth.KeyStore = (*DB)(nil)
