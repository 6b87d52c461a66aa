package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
)

// ErrRouteNotFound is returned by Route for an unknown name.
var ErrRouteNotFound = errors.New("postgres: route not found")

// versioned is a table of named JSON specs whose version rises at every
// write: functions and routes. Its name is one of the constants below,
// never input, since it is spliced into the SQL.
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

type row struct {
	version          int64
	created, updated time.Time
	isNew            bool
}

// stamp is the time as PostgreSQL keeps it (microseconds), so what a write
// returns equals what a later read returns.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// put creates or replaces name's spec in t, raising its version, and logs
// the change in the same transaction.
func (db *DB) put(ctx context.Context, t versioned, name string, specJSON []byte, now time.Time) (row, error) {
	kind := t.kind()
	r := row{updated: stamp(now)}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		// One statement: two nodes writing the same new name cannot both
		// insert; xmax = 0 tells an insert from an update.
		err := tx.QueryRow(ctx, `INSERT INTO `+string(t)+` AS t (name, spec, version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)
			ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, version = t.version + 1, updated_at = excluded.updated_at
			RETURNING version, created_at, xmax = 0`, name, string(specJSON), r.updated).Scan(&r.version, &r.created, &r.isNew)
		if err != nil {
			return fmt.Errorf("write %s %q: %w", kind, name, err)
		}
		if t == functionsTable {
			if err := addVersion(ctx, tx, name, r.version, specJSON, r.updated); err != nil {
				return err
			}
		}
		return logChange(ctx, tx, kind, name, false, r.version)
	})
	r.created = r.created.UTC()
	return r, err
}

// remove deletes name from t and logs the change in the same transaction;
// existed is false (and nothing is logged) when it was not stored.
func (db *DB) remove(ctx context.Context, t versioned, name string) (bool, error) {
	kind := t.kind()
	var existed bool
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+string(t)+` WHERE name = $1`, name)
		if err != nil {
			return fmt.Errorf("delete %s %q: %w", kind, name, err)
		}
		if existed = tag.RowsAffected() > 0; !existed {
			return nil
		}
		if t == functionsTable {
			// A function deployed again under the name starts at version 1.
			if _, err := tx.Exec(ctx, `DELETE FROM function_versions WHERE name = $1`, name); err != nil {
				return fmt.Errorf("delete history of %s %q: %w", kind, name, err)
			}
		}
		return logChange(ctx, tx, kind, name, true, 0)
	})
	return existed, err
}

// addVersion records a function version in its deploy history, with the
// id of the key that makes the request in ctx ("" for none), and prunes
// the history to api.FunctionVersionsKept.
func addVersion(ctx context.Context, tx pgx.Tx, name string, version int64, specJSON []byte, at time.Time) error {
	var by string
	if p := auth.FromContext(ctx); p != nil {
		by = p.KeyID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO function_versions (name, version, spec, deployed_at, deployed_by) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name, version) DO UPDATE SET spec = excluded.spec, deployed_at = excluded.deployed_at, deployed_by = excluded.deployed_by`,
		name, version, string(specJSON), at, by); err != nil {
		return fmt.Errorf("write history of function %q: %w", name, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM function_versions WHERE name = $1 AND version <= $2`, name, version-api.FunctionVersionsKept); err != nil {
		return fmt.Errorf("prune history of function %q: %w", name, err)
	}
	return nil
}

// FunctionVersions returns name's deploy history, newest first, at most
// limit entries (api.FunctionVersionsKept are kept).
func (db *DB) FunctionVersions(ctx context.Context, name string, limit int) ([]api.FunctionVersion, error) {
	rows, err := db.Pool.Query(ctx, `SELECT version, spec, deployed_at, deployed_by FROM function_versions
		WHERE name = $1 ORDER BY version DESC LIMIT $2`, name, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("read history of function %q: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.FunctionVersion, error) {
		v := api.FunctionVersion{Name: name}
		var spec string
		err := r.Scan(&v.Version, &spec, &v.DeployedAt, &v.DeployedBy)
		v.Spec, v.DeployedAt = json.RawMessage(spec), v.DeployedAt.UTC()
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("read history of function %q: %w", name, err)
	}
	return out, nil
}

// PutFunction creates or replaces the spec of name, raising its version.
func (db *DB) PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Function, bool, error) {
	r, err := db.put(ctx, functionsTable, name, specJSON, now)
	if err != nil {
		return api.Function{}, false, err
	}
	return functionRecord(name, string(specJSON), r.version, r.created, r.updated), r.isNew, nil
}

// DeleteFunction removes name; existed is false when it was not stored.
func (db *DB) DeleteFunction(ctx context.Context, name string) (bool, error) {
	return db.remove(ctx, functionsTable, name)
}

// ListFunctions returns every stored function by name.
func (db *DB) ListFunctions(ctx context.Context) ([]api.Function, error) {
	rows, err := db.Pool.Query(ctx, `SELECT name, spec, version, created_at, updated_at FROM functions ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Function, error) {
		var name, spec string
		var version int64
		var c, u time.Time
		err := r.Scan(&name, &spec, &version, &c, &u)
		return functionRecord(name, spec, version, c, u), err
	})
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	return out, nil
}

func functionRecord(name, spec string, version int64, created, updated time.Time) api.Function {
	var probe struct {
		Runtime string `json:"runtime"`
	}
	_ = json.Unmarshal([]byte(spec), &probe) // a spec without one has none
	return api.Function{Name: name, Spec: json.RawMessage(spec), Runtime: probe.Runtime, Version: version,
		CreatedAt: created.UTC(), UpdatedAt: updated.UTC()}
}

// PutRoute creates or replaces the route name, raising its version.
func (db *DB) PutRoute(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Route, bool, error) {
	r, err := db.put(ctx, routesTable, name, specJSON, now)
	if err != nil {
		return api.Route{}, false, err
	}
	return api.Route{Name: name, Spec: json.RawMessage(specJSON), Version: r.version, CreatedAt: r.created, UpdatedAt: r.updated}, r.isNew, nil
}

// Route returns one stored route or ErrRouteNotFound.
func (db *DB) Route(ctx context.Context, name string) (api.Route, error) {
	rt := api.Route{Name: name}
	var spec string
	err := db.Pool.QueryRow(ctx, `SELECT spec, version, created_at, updated_at FROM routes WHERE name = $1`, name).
		Scan(&spec, &rt.Version, &rt.CreatedAt, &rt.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return api.Route{}, fmt.Errorf("route %q: %w", name, ErrRouteNotFound)
	}
	if err != nil {
		return api.Route{}, fmt.Errorf("read route %q: %w", name, err)
	}
	rt.Spec, rt.CreatedAt, rt.UpdatedAt = json.RawMessage(spec), rt.CreatedAt.UTC(), rt.UpdatedAt.UTC()
	return rt, nil
}

// DeleteRoute removes name; existed is false when it was not stored.
func (db *DB) DeleteRoute(ctx context.Context, name string) (bool, error) {
	return db.remove(ctx, routesTable, name)
}

// ListRoutes returns every stored route by name.
func (db *DB) ListRoutes(ctx context.Context) ([]api.Route, error) {
	rows, err := db.Pool.Query(ctx, `SELECT name, spec, version, created_at, updated_at FROM routes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Route, error) {
		var rt api.Route
		var spec string
		err := r.Scan(&rt.Name, &spec, &rt.Version, &rt.CreatedAt, &rt.UpdatedAt)
		rt.Spec, rt.CreatedAt, rt.UpdatedAt = json.RawMessage(spec), rt.CreatedAt.UTC(), rt.UpdatedAt.UTC()
		return rt, err
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return out, nil
}

// PutSecret creates or replaces the secret name. created says which.
func (db *DB) PutSecret(ctx context.Context, name string, value []byte, now time.Time) (api.Secret, bool, error) {
	rec := api.Secret{Name: name, UpdatedAt: stamp(now)}
	var isNew bool
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO secrets AS s (name, value, created_at, updated_at) VALUES ($1, $2, $3, $3)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
			RETURNING created_at, xmax = 0`, name, value, rec.UpdatedAt).Scan(&rec.CreatedAt, &isNew)
		if err != nil {
			return fmt.Errorf("write secret %q: %w", name, err)
		}
		return logChange(ctx, tx, api.ChangeSecret, name, false, 0)
	})
	if err != nil {
		return api.Secret{}, false, err
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	return rec, isNew, nil
}

// SecretValue returns the value of the secret name; ok is false when there
// is none.
func (db *DB) SecretValue(ctx context.Context, name string) ([]byte, bool, error) {
	var v []byte
	err := db.Pool.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read secret %q: %w", name, err)
	}
	return v, true, nil
}

// DeleteSecret removes name; existed is false when it was not stored.
func (db *DB) DeleteSecret(ctx context.Context, name string) (bool, error) {
	var existed bool
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM secrets WHERE name = $1`, name)
		if err != nil {
			return fmt.Errorf("delete secret %q: %w", name, err)
		}
		if existed = tag.RowsAffected() > 0; !existed {
			return nil
		}
		return logChange(ctx, tx, api.ChangeSecret, name, true, 0)
	})
	return existed, err
}

// ListSecrets returns every secret's name and times by name, never a value.
func (db *DB) ListSecrets(ctx context.Context) ([]api.Secret, error) {
	rows, err := db.Pool.Query(ctx, `SELECT name, created_at, updated_at FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Secret, error) {
		var s api.Secret
		err := r.Scan(&s.Name, &s.CreatedAt, &s.UpdatedAt)
		s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return out, nil
}

var _ auth.KeyEnsurer = (*DB)(nil)

const keyColumns = `id, name, hash, scope, functions, rate_per_sec, burst, max_concurrency, created_at, expires_at, revoked_at`

// CreateKey stores a new key record (its hash, never the key).
func (db *DB) CreateKey(ctx context.Context, k auth.Key) error {
	fns := k.Functions
	if fns == nil {
		fns = []string{}
	}
	fnsJSON, err := json.Marshal(fns)
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys(`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			k.ID, k.Name, k.Hash, string(k.Scope), string(fnsJSON), k.RatePerSec, k.Burst, k.MaxConcurrency,
			stamp(k.CreatedAt), optTime(k.ExpiresAt), optTime(k.RevokedAt))
		if err != nil {
			return fmt.Errorf("create key %s: %w", k.ID, err)
		}
		return logChange(ctx, tx, api.ChangeKey, k.ID, false, 0)
	})
}

// EnsureKey stores k unless a key with its id exists (auth.KeyEnsurer):
// ON CONFLICT DO NOTHING, so servers bootstrapping the same key at once
// neither fail nor duplicate it; only the one that stored it logs a change.
func (db *DB) EnsureKey(ctx context.Context, k auth.Key) (created bool, err error) {
	fns := k.Functions
	if fns == nil {
		fns = []string{}
	}
	fnsJSON, err := json.Marshal(fns)
	if err != nil {
		return false, fmt.Errorf("ensure key: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO api_keys(`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (id) DO NOTHING`,
			k.ID, k.Name, k.Hash, string(k.Scope), string(fnsJSON), k.RatePerSec, k.Burst, k.MaxConcurrency,
			stamp(k.CreatedAt), optTime(k.ExpiresAt), optTime(k.RevokedAt))
		if err != nil {
			return fmt.Errorf("ensure key %s: %w", k.ID, err)
		}
		if created = tag.RowsAffected() == 1; !created {
			return nil
		}
		return logChange(ctx, tx, api.ChangeKey, k.ID, false, 0)
	})
	return created, err
}

// KeyByID returns the key with id, or auth.ErrNotFound.
func (db *DB) KeyByID(ctx context.Context, id string) (auth.Key, error) {
	k, err := scanKey(db.Pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.Key{}, fmt.Errorf("key %s: %w", id, auth.ErrNotFound)
	}
	return k, err
}

// ListKeys returns every key, revoked ones included, oldest first.
func (db *DB) ListKeys(ctx context.Context) ([]auth.Key, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// RevokeKey marks id revoked at at; a second revoke keeps the first time.
func (db *DB) RevokeKey(ctx context.Context, id string, at time.Time) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, stamp(at), id)
		if err != nil {
			return fmt.Errorf("revoke key %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("revoke key %s: %w", id, auth.ErrNotFound)
		}
		// Announced so that other nodes drop the key from their caches
		// now rather than after auth's cache TTL.
		return logChange(ctx, tx, api.ChangeKey, id, false, 0)
	})
}

func scanKey(row pgx.Row) (auth.Key, error) {
	var k auth.Key
	var scope, fns string
	var expires, revoked *time.Time
	if err := row.Scan(&k.ID, &k.Name, &k.Hash, &scope, &fns, &k.RatePerSec, &k.Burst, &k.MaxConcurrency, &k.CreatedAt, &expires, &revoked); err != nil {
		return auth.Key{}, err
	}
	k.Scope = auth.Scope(scope)
	if err := json.Unmarshal([]byte(fns), &k.Functions); err != nil {
		return auth.Key{}, fmt.Errorf("key %s: bad functions: %w", k.ID, err)
	}
	if len(k.Functions) == 0 {
		k.Functions = nil
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if expires != nil {
		k.ExpiresAt = expires.UTC()
	}
	if revoked != nil {
		k.RevokedAt = revoked.UTC()
	}
	return k, nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	s := stamp(t)
	return &s
}

// maxKeepWarmState bounds one stored histogram (a full one is about 8 KiB).
const maxKeepWarmState = 64 << 10

// LoadKeepWarm returns every stored keep-warm histogram by function.
func (db *DB) LoadKeepWarm(ctx context.Context) (map[string][]byte, error) {
	rows, err := db.Pool.Query(ctx, `SELECT function, state FROM keep_warm`)
	if err != nil {
		return nil, fmt.Errorf("read keep-warm state: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var fn string
		var st []byte
		if err := rows.Scan(&fn, &st); err != nil {
			return nil, fmt.Errorf("read keep-warm state: %w", err)
		}
		out[fn] = st
	}
	return out, rows.Err()
}

// SaveKeepWarm stores fn's histogram, or deletes it when state is nil.
// With several nodes the last writer's histogram stands: each learns from
// its own traffic until the controller is one leader.
func (db *DB) SaveKeepWarm(ctx context.Context, fn string, state []byte, now time.Time) error {
	if state == nil {
		_, err := db.Pool.Exec(ctx, `DELETE FROM keep_warm WHERE function = $1`, fn)
		return err
	}
	if len(state) > maxKeepWarmState {
		return fmt.Errorf("keep-warm state of %q: %d bytes (at most %d)", fn, len(state), maxKeepWarmState)
	}
	_, err := db.Pool.Exec(ctx, `INSERT INTO keep_warm(function, state, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (function) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, fn, state, stamp(now))
	if err != nil {
		return fmt.Errorf("write keep-warm state of %q: %w", fn, err)
	}
	return nil
}
