package app

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/datadir"
)

// openDataDir makes the data dir private (0700, tightened with a warning
// if it was looser, instance logs an older version wrote included) and
// locks it for holder, so no second server or offline command writes the
// same state. The caller releases the lock last.
//
// Files are made private by creating each with an explicit 0600/0700 mode,
// not by changing the process umask: instances inherit the umask, and what
// they write is theirs to decide.
func openDataDir(cfg config.Config, logger *slog.Logger, holder string) (*datadir.Lock, error) {
	was, err := datadir.Prepare(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if was != 0 {
		logger.Warn("the data dir was open to other users (it holds the database, keys and job data); tightened to 0700",
			"data_dir", cfg.DataDir, "was", was.String())
	}
	lock, err := datadir.Acquire(cfg.DataDir, holder)
	if err != nil {
		return nil, err
	}
	n, err := datadir.Tighten(filepath.Join(cfg.DataDir, "logs"))
	if err != nil {
		lock.Release()
		return nil, err
	}
	if n > 0 {
		logger.Warn("instance logs were open to other users; tightened to 0600 (dirs 0700)", "files", n)
	}
	return lock, nil
}

// ResetAdminKey is `ember keys reset-admin`: with no server on dataDir, it
// creates a new admin key in the store (store as --store: "" is the data
// dir's SQLite file) and writes it to <dataDir>/admin.key (0600). It
// refuses while a server holds the data dir.
func ResetAdminKey(ctx context.Context, dataDir, store string, logger *slog.Logger) (path string, err error) {
	cfg := config.Default()
	cfg.DataDir, cfg.Store = dataDir, store
	if _, _, err := cfg.StoreKind(); err != nil {
		return "", err
	}
	lock, err := openDataDir(cfg, logger, "ember keys reset-admin")
	if err != nil {
		return "", err
	}
	defer lock.Release()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer st.close()
	path, err = auth.ResetAdminKey(ctx, st.records, dataDir, time.Now())
	if err != nil {
		return "", fmt.Errorf("%s: %w", dataDir, err)
	}
	return path, nil
}
