package sqlite

import (
	"context"
	"fmt"
	"time"
)

// maxKeepWarmState bounds one stored histogram (a full one is about 8 KiB).
const maxKeepWarmState = 64 << 10

// LoadKeepWarm returns every stored keep-warm histogram by function.
func (s *DB) LoadKeepWarm(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT function, state FROM keep_warm`)
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
func (s *DB) SaveKeepWarm(ctx context.Context, fn string, state []byte, now time.Time) error {
	if state == nil {
		_, err := s.SQL.ExecContext(ctx, `DELETE FROM keep_warm WHERE function = ?`, fn)
		return err
	}
	if len(state) > maxKeepWarmState {
		return fmt.Errorf("keep-warm state of %q: %d bytes (at most %d)", fn, len(state), maxKeepWarmState)
	}
	_, err := s.SQL.ExecContext(ctx, `INSERT INTO keep_warm(function, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(function) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		fn, state, now.UTC().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("write keep-warm state of %q: %w", fn, err)
	}
	return nil
}
