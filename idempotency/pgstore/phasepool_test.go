package pgstore_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPhaseDoesNotStarveThePool: with a pool of 1 and of 2 connections,
// 50 concurrent requests whose handlers each record a foreign phase and
// then insert an order all complete, each with its own order and its own
// recovery point. Before Phase had connections of its own, each request's
// transaction held a connection while its Phase waited for a second: as
// many requests as connections hung until their clients gave up.
func TestPhaseDoesNotStarveThePool(t *testing.T) {
	for _, conns := range []int32{1, 2} {
		t.Run(fmt.Sprintf("MaxConns=%d", conns), func(t *testing.T) {
			s := shopIn(t, newSchema(t), pgstore.Config{}, conns)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				key, _, _ := idempotency.RequestKey(r)
				charge, err := s.store.Phase(ctx, "charge", func(context.Context) ([]byte, error) {
					return []byte("ch_" + key), nil
				})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				if _, err := pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", string(charge)); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusCreated)
			})
			srv := httptestServer(t, idempotency.Middleware(s.store, idempotency.MiddlewareConfig{})(h))
			c := plainClient(t)
			c.Timeout = 30 * time.Second // a hang fails the test instead of stalling it

			const n = 50
			replies := make([]reply, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { replies[i] = post(c, srv.URL, fmt.Sprintf("order-%d", i), "x") })
			}
			wg.Wait()
			for i, r := range replies {
				require.NoError(t, r.err, "request %d", i)
				assert.Equal(t, http.StatusCreated, r.status, "request %d: %s", i, r.body)
			}
			assert.Equal(t, n, s.orders(t))
			var points int
			require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency_phases").Scan(&points))
			assert.Equal(t, n, points)
		})
	}
}
