package pgstore_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
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
