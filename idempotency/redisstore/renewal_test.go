package redisstore_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// renewSignal is a Store that reports every successful Renew.
type renewSignal struct {
	*redisstore.Store
	renewed chan struct{}
}

func (s renewSignal) Renew(ctx context.Context, key string, token uint64, lease time.Duration) error {
	err := s.Store.Renew(ctx, key, token, lease)
	if err == nil {
		s.renewed <- struct{}{}
	}
	return err
}

// TestMiddlewareHandlerSlowerThanLease: a handler that runs past its
// lease keeps its key in Redis, because the middleware renews the lease:
// a repeat after more than a lease gets 409, not a second run. On
// miniredis the test moves Redis's clock by a third of the lease at each
// renewal; on a real Redis the lease runs in real time.
func TestMiddlewareHandlerSlowerThanLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		lease := 300 * time.Millisecond
		if b.fastForward == nil {
			lease = 2 * time.Second // real time: room for a slow scheduler
		}
		store := renewSignal{Store: b.store, renewed: make(chan struct{}, 16)}
		finish := make(chan struct{})
		var a app
		a.before = func(*http.Request) {
			if a.runs.Load() == 0 {
				<-finish
			}
		}
		release := sync.OnceFunc(func() { close(finish) })
		srv := httptest.NewServer(idempotency.Middleware(store, idempotency.MiddlewareConfig{
			Lease: lease, Logger: slog.New(slog.DiscardHandler),
		})(&a))
		defer srv.Close()
		defer release() // before srv.Close, which waits for the handler

		done := make(chan reply, 1)
		go func() { done <- post(t, srv, "slow", "order") }()
		const renewals = 6 // two leases' worth
		for i := range renewals {
			select {
			case <-store.renewed:
			case <-time.After(20 * lease):
				t.Fatalf("renewal %d never came", i+1)
			}
			if b.fastForward != nil {
				b.fastForward(lease / 3)
			}
		}
		r := post(t, srv, "slow", "order")
		assert.Equal(t, http.StatusConflict, r.status, "two leases on, the key is still held")
		release()
		require.Equal(t, 201, (<-done).status)
		assert.Equal(t, "true", post(t, srv, "slow", "order").replayed)
		assert.Equal(t, int32(1), a.runs.Load(), "one run, however slow")
	})
}
