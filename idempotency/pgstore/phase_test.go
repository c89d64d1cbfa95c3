package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// payments is a downstream service that deduplicates by key (behind the
// middleware, with a memory store) and counts the charges it makes.
type payments struct {
	url     string
	charges atomic.Int64
}

func newPayments(t *testing.T) *payments {
	p := &payments{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.charges.Add(1)
		fmt.Fprintf(w, "ch_%d", n)
	})
	p.url = httptestServer(t, idempotency.Middleware(nil, idempotency.MiddlewareConfig{})(h)).URL
	return p
}

// charge asks the payments service for a charge with key.
func (p *payments) charge(c *http.Client, key string) ([]byte, error) {
	r := post(c, p.url, key, "100 EUR")
	if r.err != nil {
		return nil, r.err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("payments: %d %s", r.status, r.body)
	}
	return []byte(r.body), nil
}

// TestPhaseRecovery: a handler charges through a foreign phase, then
// writes its order in the request's transaction. Its first run panics
// after the charge (the transaction rolls back); the retry finds the
// charge's recovery point and does not charge again.
func TestPhaseRecovery(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	pay := newPayments(t)
	c := plainClient(t)
	runs := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		ctx := r.Context()
		charge, err := s.store.Phase(ctx, "charge", func(ctx context.Context) ([]byte, error) {
			key, _ := idempotency.DerivedKey(ctx, "charge")
			return pay.charge(c, key)
		})
		require.NoError(t, err)
		_, err = pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", string(charge))
		require.NoError(t, err)
		if runs == 1 {
			panic(http.ErrAbortHandler) // after the charge, before the commit
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(charge)
	})
	srv := httptestServer(t, idempotency.Middleware(s.store, idempotency.MiddlewareConfig{})(h))

	require.Error(t, post(c, srv.URL, "k", "order").err)
	assert.Equal(t, 0, s.orders(t), "the order was rolled back")
	assert.EqualValues(t, 1, pay.charges.Load(), "but the charge happened, and was recorded")

	r := post(c, srv.URL, "k", "order")
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, "ch_1", r.body, "the recorded charge")
	assert.EqualValues(t, 1, pay.charges.Load(), "no second charge")
	var item string
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT item FROM orders").Scan(&item))
	assert.Equal(t, "ch_1", item)
	assert.Equal(t, 2, runs)
}

// TestPhaseLostAnswer: the payments service charges but its answer is
// lost before the phase can record it. The handler releases its key and
// answers 502; the retry calls again with the same derived key, and the
// payments service replays the first charge instead of making a second.
func TestPhaseLostAnswer(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	pay := newPayments(t)
	c := plainClient(t)
	calls := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		charge, err := s.store.Phase(r.Context(), "charge", func(ctx context.Context) ([]byte, error) {
			calls++
			key, _ := idempotency.DerivedKey(ctx, "charge")
			res, err := pay.charge(c, key)
			if calls == 1 {
				return nil, errors.New("connection reset") // the charge happened; its answer is lost
			}
			return res, err
		})
		if err != nil {
			idempotency.Release(r)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(charge)
	})
	srv := httptestServer(t, idempotency.Middleware(s.store, idempotency.MiddlewareConfig{})(h))

	assert.Equal(t, http.StatusBadGateway, post(c, srv.URL, "k", "order").status)
	r := post(c, srv.URL, "k", "order")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, "ch_1", r.body, "the payments service replayed the first charge")
	assert.EqualValues(t, 1, pay.charges.Load())
	assert.Equal(t, 2, calls)
}

// TestAtomicPhasePlain runs a handler in the plain mode (no request
// transaction): a local phase takes stock in a transaction of its own,
// then a foreign phase fails once. The retry skips the stock phase, whose
// write and recovery point committed together, and charges once.
func TestAtomicPhasePlain(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	_, err := s.pool.Exec(ctx, `CREATE TABLE stock (n int NOT NULL); INSERT INTO stock VALUES (10)`)
	require.NoError(t, err)
	pay := newPayments(t)
	c := plainClient(t)
	takes, failOnce := 0, true
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		left, err := s.store.AtomicPhase(ctx, "stock", func(ctx context.Context, tx *pgstore.Txn) ([]byte, error) {
			takes++
			var n int
			err := tx.QueryRow(ctx, "UPDATE stock SET n = n - 1 RETURNING n").Scan(&n)
			return []byte(fmt.Sprint(n)), err
		})
		require.NoError(t, err)
		_, err = s.store.Phase(ctx, "charge", func(ctx context.Context) ([]byte, error) {
			if failOnce {
				failOnce = false
				return nil, errors.New("payments unavailable")
			}
			key, _ := idempotency.DerivedKey(ctx, "charge")
			return pay.charge(c, key)
		})
		if err != nil {
			idempotency.Release(r)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(left)
	})
	srv := httptestServer(t, idempotency.Middleware(s.store.Plain(), idempotency.MiddlewareConfig{})(h))

	assert.Equal(t, http.StatusBadGateway, post(c, srv.URL, "k", "order").status)
	r := post(c, srv.URL, "k", "order")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, "9", r.body, "the first run's recorded stock")
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT n FROM stock").Scan(&n))
	assert.Equal(t, 9, n, "stock taken once")
	assert.Equal(t, 1, takes)
	assert.EqualValues(t, 1, pay.charges.Load())
}

// TestAtomicPhaseFails: a local phase whose function fails leaves neither
// its writes nor a recovery point, in the plain mode and in the request's
// transaction.
func TestAtomicPhaseFails(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	c := plainClient(t)
	var runs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		_, err := s.store.AtomicPhase(r.Context(), "write", func(ctx context.Context, tx *pgstore.Txn) ([]byte, error) {
			if _, err := tx.Exec(ctx, "INSERT INTO orders (item) VALUES ('x')"); err != nil {
				return nil, err
			}
			return nil, errors.New("second write failed")
		})
		require.Error(t, err)
		idempotency.Release(r)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	for name, store := range map[string]idempotency.Store{"plain": s.store.Plain(), "transactional": s.store} {
		t.Run(name, func(t *testing.T) {
			srv := httptestServer(t, idempotency.Middleware(store, idempotency.MiddlewareConfig{})(h))
			assert.Equal(t, http.StatusServiceUnavailable, post(c, srv.URL, "k-"+name, "x").status)
			assert.Equal(t, 0, s.orders(t))
			var points int
			require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency_phases").Scan(&points))
			assert.Zero(t, points)
		})
	}
	assert.EqualValues(t, 2, runs.Load())
}

func TestPhaseNoKey(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	_, err := s.Phase(ctx, "x", func(context.Context) ([]byte, error) { panic("not called") })
	assert.ErrorIs(t, err, pgstore.ErrNoKey)
	_, err = s.AtomicPhase(ctx, "x", func(context.Context, *pgstore.Txn) ([]byte, error) { panic("not called") })
	assert.ErrorIs(t, err, pgstore.ErrNoKey)
}

// TestReapPhases: Reap deletes expired recovery points and keeps live
// ones.
func TestReapPhases(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	_, err := pool.Exec(ctx, `INSERT INTO rebound_idempotency_phases (scope, key, phase, result, expires_at)
		VALUES ('', 'a', 'p', '', now() - interval '1 second'), ('', 'b', 'p', '', now() + interval '1 hour')`)
	require.NoError(t, err)
	n, err := s.Reap(ctx, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	var keys string
	require.NoError(t, pool.QueryRow(ctx, "SELECT string_agg(key, ',') FROM rebound_idempotency_phases").Scan(&keys))
	assert.Equal(t, "b", keys)
}
