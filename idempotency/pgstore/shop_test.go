package pgstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/require"
)

// shop is a service whose handler creates an order in the request's
// transaction, the effect the tests count.
type shop struct {
	schema string
	pool   *pgxpool.Pool
	store  *pgstore.Store
	runs   atomic.Int64 // handler calls
	// after, when set, runs in the handler after the insert, with the new
	// order's id; it may panic, block, or kill the connection.
	after func(w http.ResponseWriter, r *http.Request, tx *pgstore.Txn, id int64)
}

// newShop makes a shop in a schema of t's own, with an orders table and a
// migrated store configured by cfg.
func newShop(t testing.TB, cfg pgstore.Config) *shop {
	t.Helper()
	schema := pgtest.NewSchema(t)
	return shopIn(t, schema, cfg, 8)
}

// shopIn makes a shop on schema with a pool of its own of maxConns
// connections: a second shopIn on one schema is a second server on one
// database.
func shopIn(t testing.TB, schema string, cfg pgstore.Config, maxConns int32) *shop {
	t.Helper()
	pool := pgtest.PoolWith(t, schema, func(c *pgxpool.Config) { c.MaxConns = maxConns })
	store, err := pgstore.New(pool, cfg)
	require.NoError(t, err)
	t.Cleanup(store.Close)
	require.NoError(t, store.Migrate(ctx))
	_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, item text NOT NULL)`)
	require.NoError(t, err)
	return &shop{schema: schema, pool: pool, store: store}
}

// ServeHTTP creates an order for the request's body and answers 201 with
// its id.
func (s *shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.runs.Add(1)
	tx := pgstore.Tx(r.Context())
	item, _ := io.ReadAll(r.Body)
	var id int64
	if err := tx.QueryRow(r.Context(), "INSERT INTO orders (item) VALUES ($1) RETURNING id", string(item)).Scan(&id); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s.after != nil {
		s.after(w, r, tx, id)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%d}`, id)
}

// server serves the shop behind the middleware on 127.0.0.1.
func (s *shop) server(t testing.TB, cfg idempotency.MiddlewareConfig) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(idempotency.Middleware(s.store, cfg)(s))
	t.Cleanup(srv.Close)
	return srv
}

// orders returns the number of orders.
func (s *shop) orders(t testing.TB) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
	return n
}

// keys returns the number of rows in the idempotency table.
func (s *shop) keys(t testing.TB) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency").Scan(&n))
	return n
}

// reply is what a client got.
type reply struct {
	status int
	header http.Header
	body   string
	err    error
}

// plainClient is an HTTP client without retries, whose idle connections
// are closed when t ends.
func plainClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// post sends one POST with key (none when empty) and body to url.
func post(c *http.Client, url, key, body string) reply {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}
