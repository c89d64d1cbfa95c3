package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigNames(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := "Idem Store " + pgtest.NewSchema(t) // a name that needs quoting, new in each run
	quoted := pgx.Identifier{schema}.Sanitize()
	_, err := pool.Exec(ctx, `CREATE SCHEMA `+quoted)
	require.NoError(t, err)
	s, err := pgstore.New(pool, pgstore.Config{Schema: schema, Table: `keys"; DROP TABLE x; --`})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 { // concurrent starts of one service
		wg.Go(func() { assert.NoError(t, s.Migrate(ctx)) })
	}
	wg.Wait()
	require.NoError(t, s.Migrate(ctx), "Migrate runs again harmlessly")

	rec, reserved, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	require.True(t, reserved)
	require.NoError(t, s.Complete(ctx, "\nk", rec.Token, okResponse("x"), time.Hour))

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+quoted+`."keys""; DROP TABLE x; --"`).Scan(&n))
	assert.Equal(t, 1, n, "the row is in the configured schema and table")
	var indexdef string
	require.NoError(t, pool.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE '%_expires_idx'`, schema).Scan(&indexdef))
	assert.Contains(t, indexdef, "(expires_at)")
	assert.Contains(t, s.SchemaSQL(), quoted+`."keys""; DROP TABLE x; --"`)

	// Column types as documented.
	rows, err := pool.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = $1 AND table_name NOT LIKE '%_phases' ORDER BY ordinal_position`, schema)
	require.NoError(t, err)
	var cols []string
	for rows.Next() {
		var c, typ string
		require.NoError(t, rows.Scan(&c, &typ))
		cols = append(cols, c+" "+typ)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{
		"scope bytea", "key text", "fingerprint bytea", "token bigint", "status smallint",
		"not_replayable boolean", "outcome_unknown boolean", "header bytea", "body bytea", "expires_at timestamp with time zone",
	}, cols)
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]pgstore.Config{
		"long table":   {Table: strings.Repeat("t", 52)},
		"long schema":  {Schema: strings.Repeat("s", 64)},
		"NUL in table": {Table: "a\x00b"},
		"bad UTF-8":    {Schema: "\xff"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pgstore.New(nil, cfg)
			assert.ErrorIs(t, err, pgstore.ErrConfig)
		})
	}
	_, err := pgstore.New(nil, pgstore.Config{Table: strings.Repeat("t", 51)})
	assert.NoError(t, err, "51 bytes is the longest table name")
}

func TestReap(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	// 2,500 expired rows, 10 live ones, and one expired row locked by a
	// transaction still open.
	_, err := pool.Exec(ctx, `INSERT INTO rebound_idempotency (scope, key, fingerprint, token, expires_at)
		SELECT '', 'old' || i, '\x00'::bytea, i, now() - interval '1 second' FROM generate_series(1, 2501) i`)
	require.NoError(t, err)
	for i := range 10 {
		_, _, err := s.Reserve(ctx, fmt.Sprint("\nlive", i), fp(1), time.Minute)
		require.NoError(t, err)
	}
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM rebound_idempotency WHERE key = 'old2501' FOR UPDATE`)
	require.NoError(t, err)

	n, err := s.Reap(ctx, 1000)
	require.NoError(t, err)
	assert.EqualValues(t, 2500, n, "every expired row but the locked one, without waiting for it")
	var left []string
	rows, err := pool.Query(ctx, "SELECT key FROM rebound_idempotency WHERE key LIKE 'old%'")
	require.NoError(t, err)
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		left = append(left, k)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"old2501"}, left)
	var live int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency WHERE key LIKE 'live%'").Scan(&live))
	assert.Equal(t, 10, live, "live rows are kept")

	require.NoError(t, tx.Rollback(ctx))
	n, err = s.Reap(ctx, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

// deletes counts the DELETE statements a pool sends.
type deletes struct{ n atomic.Int32 }

func (d *deletes) TraceQueryStart(ctx context.Context, _ *pgx.Conn, q pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(strings.TrimSpace(q.SQL), "DELETE") {
		d.n.Add(1)
	}
	return ctx
}

func (d *deletes) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestReapBatches checks that each statement deletes at most one batch: a
// reaper bounded by a batch of 10 takes three statements for 25 rows (and
// one for the recovery points, of which there are none).
func TestReapBatches(t *testing.T) {
	var d deletes
	pool := pgtest.PoolWith(t, pgtest.NewSchema(t), func(c *pgxpool.Config) { c.ConnConfig.Tracer = &d })
	s, err := pgstore.New(pool, pgstore.Config{})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	_, err = pool.Exec(ctx, `INSERT INTO rebound_idempotency (scope, key, fingerprint, token, expires_at)
		SELECT '', 'old' || i, '\x00'::bytea, i, now() - interval '1 second' FROM generate_series(1, 25) i`)
	require.NoError(t, err)
	n, err := s.Reap(ctx, 10)
	require.NoError(t, err)
	assert.EqualValues(t, 25, n)
	assert.EqualValues(t, 4, d.n.Load(), "10 + 10 + 5, then none of the recovery points")
}
