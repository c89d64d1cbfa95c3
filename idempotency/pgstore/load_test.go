package pgstore_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoad serves 200 concurrent keyed POSTs, 10 % of them duplicates of
// another's key sent at the same moment, through the transactional
// middleware, with pools of 1 to 8 connections. Each handler records a
// foreign phase and inserts an order in the request's transaction. Every
// request is answered (none hangs: the client gives up after 30 s), with
// 201 (run or replayed), and each key has exactly one order and one
// recovery point. It logs requests/s and latency percentiles per pool
// size; the README's table comes from
//
//	go test -run TestLoad -count 1 -v . | grep -E 'conns|---'
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		requests = 200
		dups     = requests / 10
		keys     = requests - dups
	)
	for conns := int32(1); conns <= 8; conns++ {
		t.Run(fmt.Sprintf("conns=%d", conns), func(t *testing.T) {
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
			c.Timeout = 30 * time.Second

			// Requests keys..requests-1 repeat keys 0, 9, 18, ...: every
			// tenth key is sent twice, both at once.
			keyOf := func(i int) string {
				if i >= keys {
					i = (i - keys) * (keys / dups)
				}
				return fmt.Sprintf("order-%d", i)
			}
			replies := make([]reply, requests)
			took := make([]time.Duration, requests)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range requests {
				wg.Go(func() {
					<-start
					t0 := time.Now()
					replies[i] = post(c, srv.URL, keyOf(i), "item "+keyOf(i))
					took[i] = time.Since(t0)
				})
			}
			t0 := time.Now()
			close(start)
			wg.Wait()
			elapsed := time.Since(t0)

			replayed := 0
			for i, r := range replies {
				require.NoError(t, r.err, "request %d hung or failed", i)
				assert.Equal(t, http.StatusCreated, r.status, "request %d: %s", i, r.body)
				if r.header.Get(idempotency.HeaderReplayed) == "true" {
					replayed++
				}
			}
			assert.Equal(t, keys, s.orders(t), "one order per key")
			var points, distinct int
			require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT item) FROM orders").Scan(&points, &distinct))
			assert.Equal(t, keys, distinct, "no key has two orders")
			require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency_phases").Scan(&points))
			assert.Equal(t, keys, points, "one recovery point per key")
			assert.Equal(t, dups, replayed, "each duplicate replayed")

			slices.Sort(took)
			q := func(p float64) time.Duration { return took[int(p*float64(len(took)-1))].Round(100 * time.Microsecond) }
			t.Logf("conns %d: %d requests in %v: %.0f requests/s, p50 %v, p99 %v, max %v; %d replayed",
				conns, requests, elapsed.Round(time.Millisecond), float64(requests)/elapsed.Seconds(), q(0.5), q(0.99), took[len(took)-1].Round(100*time.Microsecond), replayed)
		})
	}
}
