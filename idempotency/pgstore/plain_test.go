package pgstore_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPlainMiddleware runs the middleware over Store.Plain: no
// transaction (pgstore.Tx finds none), the reservation committed before
// the handler runs, and a replay from the table.
func TestPlainMiddleware(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	_, isTx := s.store.Plain().(idempotency.TxStore)
	require.False(t, isTx)

	var runs atomic.Int64
	var inFlight sync.WaitGroup
	inFlight.Add(1)
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		_, err := pgstore.Tx(r.Context()).Exec(r.Context(), "SELECT 1")
		assert.ErrorIs(t, err, pgstore.ErrNoTx, "no transaction outside InTx")
		if n == 1 {
			close(entered)
			<-release
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "created")
	})
	srv := httptestServer(t, idempotency.Middleware(s.store.Plain(), idempotency.MiddlewareConfig{})(h))
	c := plainClient(t)

	var first reply
	go func() { defer inFlight.Done(); first = post(c, srv.URL, "k", "x") }()
	<-entered
	assert.Equal(t, 1, s.keys(t), "the reservation is committed while the handler runs")
	r := post(c, srv.URL, "k", "x")
	assert.Equal(t, http.StatusConflict, r.status, "a duplicate of a running request")
	close(release)
	inFlight.Wait()
	require.NoError(t, first.err)
	assert.Equal(t, http.StatusCreated, first.status)
	r = post(c, srv.URL, "k", "x")
	assert.Equal(t, "created", r.body)
	assert.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 1, runs.Load())
}
