package main

// FerretDB 1.24's SQLite backend creates its unique _id index on the
// expression _ferretdb_sjson->"_id", but every query, update and delete by
// _id filters on _ferretdb_sjson->'$._id'. SQLite uses an expression index
// only for the identical expression, so each of those reads the whole
// table (EXPLAIN QUERY PLAN: SCAN). The launcher adds, to every collection
// table, a plain index on the expression the queries use; SQLite then
// answers them with SEARCH ... USING INDEX. The index is not registered in
// FerretDB's metadata (listIndexes does not show it) and goes away with its
// table. Tables are picked up within a tick of their creation.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite"
)

const (
	idIndexTick = 200 * time.Millisecond
	indexSuffix = "_pulp_lazy_id"
)

// indexIDs adds the missing _id expression indexes until ctx ends.
func indexIDs(ctx context.Context, dir string, logger *slog.Logger) {
	t := time.NewTicker(idIndexTick)
	defer t.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, f := range files {
			if err := indexFile(ctx, f); err != nil && ctx.Err() == nil {
				logger.Debug("id index", "file", f, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func indexFile(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite", "file:"+file+"?mode=rw&_pragma=busy_timeout(2000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections
		WHERE table_name || '`+indexSuffix+`' NOT IN (SELECT name FROM sqlite_master WHERE type = 'index')`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`,
			quote(t+indexSuffix), quote(t))
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return nil
}

func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
