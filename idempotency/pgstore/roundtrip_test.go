package pgstore_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roundTrips counts what a pool sends that waits for the server: each
// query (Exec, Query, QueryRow), each batch (pipelined: one round trip
// for all its queries) and each explicit or cache-miss prepare.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (c *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TestRoundTrips checks the cost the transactional mode promises, on warm
// connections: a first request takes four round trips, one more than the
// handler's own insert in a transaction of its own (BEGIN, INSERT,
// COMMIT), and a replay takes one.
func TestRoundTrips(t *testing.T) {
	var rt roundTrips
	schema := pgtest.NewSchema(t)
	pool := pgtest.PoolWith(t, schema, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = &rt
		c.MaxConns = 1 // one connection, so that its statement cache warms once
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	store, err := pgstore.New(pool, pgstore.Config{})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	_, err = pool.Exec(ctx, `CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL)`)
	require.NoError(t, err)
	s := &shop{schema: schema, pool: pool, store: store}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	for i := range 3 { // warm the statement cache
		post(c, srv.URL, fmt.Sprint("warm", i), "x")
		post(c, srv.URL, fmt.Sprint("warm", i), "x")
	}
	for i := range 10 {
		key := fmt.Sprint("k", i)
		rt.n.Store(0)
		r := post(c, srv.URL, key, "book")
		require.Equal(t, http.StatusCreated, r.status)
		assert.EqualValues(t, 4, rt.n.Load(), "first request %d", i)

		rt.n.Store(0)
		r = post(c, srv.URL, key, "book")
		require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
		assert.EqualValues(t, 1, rt.n.Load(), "replay %d", i)
	}

	// The baseline: the same insert in a transaction of its own (twice,
	// to count the second, with its statement cached).
	for range 2 {
		rt.n.Store(0)
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		var id int64
		require.NoError(t, tx.QueryRow(ctx, "INSERT INTO orders (item) VALUES ($1) RETURNING id", "book").Scan(&id))
		require.NoError(t, tx.Commit(ctx))
	}
	assert.EqualValues(t, 3, rt.n.Load(), "BEGIN, INSERT, COMMIT")
}
