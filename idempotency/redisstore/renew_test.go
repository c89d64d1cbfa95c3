package redisstore_test

import (
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRenew(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		rec, reserved, err := b.store.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		require.True(t, reserved)
		require.NoError(t, b.store.Renew(ctx, "k", rec.Token, time.Hour))
		pttl, err := b.client.PTTL(ctx, b.prefix+"k").Result()
		require.NoError(t, err)
		assert.Greater(t, pttl, 59*time.Minute, "the lease now ends an hour from now")

		assert.ErrorIs(t, b.store.Renew(ctx, "k", rec.Token+1, time.Hour), idempotency.ErrLeaseLost, "another token")
		assert.ErrorIs(t, b.store.Renew(ctx, "absent", rec.Token, time.Hour), idempotency.ErrLeaseLost)

		require.NoError(t, b.store.Complete(ctx, "k", rec.Token, okResponse("done"), time.Minute))
		assert.ErrorIs(t, b.store.Renew(ctx, "k", rec.Token, time.Hour), idempotency.ErrLeaseLost, "a completed record is never renewed")
		pttl, err = b.client.PTTL(ctx, b.prefix+"k").Result()
		require.NoError(t, err)
		assert.LessOrEqual(t, pttl, time.Minute, "the TTL is untouched")

		rec, _, err = b.store.Reserve(ctx, "z", fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, b.store.Renew(ctx, "z", rec.Token, 0))
		_, found, err := b.store.Lookup(ctx, "z")
		require.NoError(t, err)
		assert.False(t, found, "a zero lease ends the reservation")
	})
}
