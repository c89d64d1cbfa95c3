package pgstore_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTxFailedStatement: a statement that fails aborts the transaction;
// the handler's 201 is never sent, nothing commits, the request gets 503,
// and the retry (the statement now succeeding) runs once.
func TestTxFailedStatement(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	fail := true
	s.after = func(_ http.ResponseWriter, r *http.Request, tx *pgstore.Txn, _ int64) {
		if fail {
			fail = false
			_, err := tx.Exec(r.Context(), "INSERT INTO no_such_table VALUES (1)")
			require.Error(t, err) // a careless handler goes on
		}
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	r := post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	assert.Equal(t, 0, s.orders(t))
	assert.Equal(t, 0, s.keys(t))
	r = post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, 1, s.orders(t))
}

// TestTxHandlerEndsTransaction: a handler that commits through Exec has
// its order committed, and its key stays used as outcome unknown: a
// repeat gets 500, never a second order.
func TestTxHandlerEndsTransaction(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	s.after = func(_ http.ResponseWriter, r *http.Request, tx *pgstore.Txn, _ int64) {
		_, err := tx.Exec(r.Context(), "COMMIT")
		require.NoError(t, err)
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	r := post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	assert.Equal(t, 1, s.orders(t), "the handler committed its order itself")
	r = post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusInternalServerError, r.status)
	assert.Contains(t, r.body, idempotency.ProblemOutcomeUnknown)
	assert.Equal(t, 1, s.orders(t), "never a second order")
	assert.EqualValues(t, 1, s.runs.Load())
}

// TestTxRelease: a handler that releases its key has its writes rolled
// back with the key, and its own answer sent.
func TestTxRelease(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	release := true
	s.after = func(w http.ResponseWriter, r *http.Request, _ *pgstore.Txn, _ int64) {
		if release {
			release = false
			idempotency.Release(r)
		}
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	assert.Equal(t, http.StatusCreated, post(c, srv.URL, "k", "book").status, "the handler's answer")
	assert.Equal(t, 0, s.orders(t), "rolled back")
	assert.Equal(t, 0, s.keys(t))
	r := post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Empty(t, r.header.Get(idempotency.HeaderReplayed))
	assert.Equal(t, 1, s.orders(t))
}

// TestInTx uses InTx and Txn directly, without the middleware.
func TestInTx(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	var kept *pgstore.Txn
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		kept = pgstore.Tx(ctx)
		_, err := kept.Exec(ctx, "INSERT INTO orders (item) VALUES ('a')")
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, 1, s.orders(t), "committed")
	_, err = kept.Exec(ctx, "SELECT 1")
	assert.ErrorIs(t, err, pgstore.ErrTxDone, "a Txn is dead once its transaction ended")

	boom := errors.New("boom")
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		_, err := pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (item) VALUES ('b')")
		require.NoError(t, err)
		return boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, s.orders(t), "rolled back")

	assert.PanicsWithValue(t, "oops", func() {
		_ = s.store.InTx(ctx, func(ctx context.Context) error {
			_, err := pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (item) VALUES ('c')")
			require.NoError(t, err)
			panic("oops")
		})
	})
	assert.Equal(t, 1, s.orders(t), "rolled back after the panic")

	require.NoError(t, s.store.InTx(ctx, func(context.Context) error { return nil }), "nothing to commit")

	var none *pgstore.Txn
	_, err = none.Exec(ctx, "SELECT 1")
	assert.ErrorIs(t, err, pgstore.ErrNoTx)
	assert.ErrorIs(t, none.QueryRow(ctx, "SELECT 1").Scan(), pgstore.ErrNoTx)
	_, err = pgstore.Tx(ctx).Query(ctx, "SELECT 1")
	assert.ErrorIs(t, err, pgstore.ErrNoTx)
}

// TestTxErrorStatusRollsBack: with MiddlewareConfig.Release set to
// ReleaseRetryable, a handler that inserts and then answers 500 has its
// insert rolled back with the key (the 500 is sent), and the retry runs
// on a clean slate. Without it, the 500 commits with the insert and is
// replayed.
func TestTxErrorStatusRollsBack(t *testing.T) {
	for name, cfg := range map[string]idempotency.MiddlewareConfig{
		"ReleaseRetryable": {Release: idempotency.ReleaseRetryable},
		"default":          {},
	} {
		t.Run(name, func(t *testing.T) {
			s := newShop(t, pgstore.Config{})
			fail := true
			s.after = func(w http.ResponseWriter, _ *http.Request, _ *pgstore.Txn, _ int64) {
				if fail {
					fail = false
					http.Error(w, "downstream failed", http.StatusInternalServerError)
				}
			}
			srv := s.server(t, cfg)
			c := plainClient(t)
			assert.Equal(t, http.StatusInternalServerError, post(c, srv.URL, "k", "book").status)
			r := post(c, srv.URL, "k", "book")
			if cfg.Release != nil {
				assert.Equal(t, http.StatusCreated, r.status, "the retry ran")
				assert.Equal(t, 1, s.orders(t), "only the retry's order")
			} else {
				assert.Equal(t, http.StatusInternalServerError, r.status, "the stored 500, replayed")
				assert.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
				assert.Equal(t, 1, s.orders(t), "the first run's order")
			}
		})
	}
}

// TestTxnMethods runs every method of Txn inside one InTx and checks that
// their writes commit together, and that a failed statement met while
// reading rows is what the aborted commit reports.
func TestTxnMethods(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		tx := pgstore.Tx(ctx)
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"item"}, pgx.CopyFromRows([][]any{{"a"}, {"b"}}))
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		b := &pgx.Batch{}
		b.Queue("INSERT INTO orders (item) VALUES ('c')")
		b.Queue("SELECT count(*) FROM orders")
		br := tx.SendBatch(ctx, b)
		_, err = br.Exec()
		require.NoError(t, err)
		var count int
		require.NoError(t, br.QueryRow().Scan(&count))
		require.NoError(t, br.Close())
		assert.Equal(t, 3, count, "the transaction sees its own writes")
		rows, err := tx.Query(ctx, "SELECT item FROM orders ORDER BY item")
		require.NoError(t, err)
		items, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b", "c"}, items)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, s.orders(t))

	err = s.store.InTx(ctx, func(ctx context.Context) error {
		tx := pgstore.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO orders (item) VALUES ('d')")
		require.NoError(t, err)
		rows, err := tx.Query(ctx, "SELECT 1 / (n - 2) FROM generate_series(1, 3) n")
		require.NoError(t, err)
		for rows.Next() {
		}
		rows.Close() // the handler forgets to look at rows.Err
		return nil
	})
	require.ErrorIs(t, err, pgstore.ErrTxAborted)
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg, "the statement's own error")
	assert.Equal(t, "22012", pg.Code)
	assert.Equal(t, 3, s.orders(t), "nothing committed")
}

// TestStoreInTx calls the Store's methods with an InTx context: on the
// transaction's own reservation (no lease to renew, in flight to Lookup,
// completed once, with the COMMIT) and on a key reserved outside it
// (the ordinary statements, inside the transaction).
func TestStoreInTx(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	outside, _, err := s.Reserve(ctx, "\nout", fp(1), time.Minute)
	require.NoError(t, err)
	err = s.InTx(ctx, func(ctx context.Context) error {
		rec, reserved, err := s.Reserve(ctx, "\nin", fp(2), time.Minute)
		require.NoError(t, err)
		require.True(t, reserved)
		assert.NoError(t, s.Renew(ctx, "\nin", rec.Token, time.Minute), "the transaction holds the key")
		got, found, err := s.Lookup(ctx, "\nin")
		require.NoError(t, err)
		require.True(t, found)
		assert.True(t, got.InFlight(), "in flight, as the transaction sees it")
		require.NoError(t, s.Complete(ctx, "\nin", rec.Token, okResponse("in"), time.Hour))
		assert.ErrorIs(t, s.Complete(ctx, "\nin", rec.Token, okResponse("again"), time.Hour), idempotency.ErrLeaseLost)

		require.NoError(t, s.Renew(ctx, "\nout", outside.Token, time.Minute))
		assert.ErrorIs(t, s.Renew(ctx, "\nout", outside.Token+1, time.Minute), idempotency.ErrLeaseLost)
		require.NoError(t, s.Complete(ctx, "\nout", outside.Token, okResponse("out"), time.Hour))
		assert.ErrorIs(t, s.Release(ctx, "\nout", outside.Token), idempotency.ErrLeaseLost)
		return nil
	})
	require.NoError(t, err)
	for key, body := range map[string]string{"\nin": "in", "\nout": "out"} {
		rec, found, err := s.Lookup(ctx, key)
		require.NoError(t, err)
		require.True(t, found, key)
		assert.Equal(t, body, string(rec.Response.Body), key)
	}

	// A key released inside the transaction rolls it back.
	err = s.InTx(ctx, func(ctx context.Context) error {
		rec, _, err := s.Reserve(ctx, "\nrel", fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Release(ctx, "\nrel", rec.Token))
		return nil
	})
	assert.ErrorIs(t, err, pgstore.ErrReleasedInTx)
	_, found, err := s.Lookup(ctx, "\nrel")
	require.NoError(t, err)
	assert.False(t, found)
}

// TestTxLockTimeoutRestored: the key's insert waits under Config.Wait,
// but the handler's statements run under the session's own lock_timeout.
func TestTxLockTimeoutRestored(t *testing.T) {
	s := shopIn(t, newSchema(t), pgstore.Config{Wait: 3 * time.Second}, 2)
	pool := pgtestPoolWithParam(t, s.schema, "lock_timeout", "7s")
	store, err := pgstore.New(pool, pgstore.Config{Wait: 3 * time.Second})
	require.NoError(t, err)
	for name, st := range map[string]*pgstore.Store{"server default": s.store, "session setting": store} {
		var seen string
		err := st.InTx(ctx, func(ctx context.Context) error {
			_, reserved, err := st.Reserve(ctx, "\n"+name, fp(1), time.Minute)
			require.NoError(t, err)
			require.True(t, reserved)
			return pgstore.Tx(ctx).QueryRow(ctx, "SHOW lock_timeout").Scan(&seen)
		})
		require.NoError(t, err)
		want := map[string]string{"server default": "0", "session setting": "7s"}[name]
		assert.Equal(t, want, seen, name)
	}
}

// pgtestPoolWithParam is a pool on schema whose sessions start with
// param set to value.
func pgtestPoolWithParam(t *testing.T, schema, param, value string) *pgxpool.Pool {
	return pgtest.PoolWith(t, schema, func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams[param] = value })
}
