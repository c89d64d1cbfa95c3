package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bad input and failing servers: every case is an error, never a panic.

func TestInvalidStatus(t *testing.T) {
	b, _ := miniBackend(t)
	rec, _, err := b.store.Reserve(ctx, "k", fp(1), time.Minute)
	require.NoError(t, err)
	for _, status := range []int{0, 99, 1000, -1} {
		err := b.store.Complete(ctx, "k", rec.Token, &idempotency.Response{Status: status}, time.Hour)
		assert.ErrorIs(t, err, redisstore.ErrInvalidStatus, "%d", status)
	}
	got, _, err := b.store.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.True(t, got.InFlight(), "a refused Complete leaves the reservation")
}

func TestMalformedValue(t *testing.T) {
	values := map[string]string{
		"not ours":      "hello",
		"empty":         "",
		"newer layout":  "\x02\x01" + strings.Repeat("x", 40),
		"zero token":    "\x01\x01" + strings.Repeat("\x00", 40),
		"unknown state": "\x01\x07" + strings.Repeat("\x01", 40),
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for name, v := range values {
			t.Run(name, func(t *testing.T) {
				require.NoError(t, b.client.Set(ctx, b.prefix+name, v, time.Minute).Err())
				_, _, err := b.store.Reserve(ctx, name, fp(1), time.Minute)
				assert.ErrorIs(t, err, redisstore.ErrMalformed)
				_, _, err = b.store.Lookup(ctx, name)
				assert.ErrorIs(t, err, redisstore.ErrMalformed)
				assert.ErrorIs(t, b.store.Release(ctx, name, 1), idempotency.ErrLeaseLost)
				got, err := b.client.Get(ctx, b.prefix+name).Result()
				require.NoError(t, err)
				assert.Equal(t, v, got, "a foreign value is left alone")
			})
		}
	})
}

func TestWrongType(t *testing.T) {
	b, _ := miniBackend(t)
	require.NoError(t, b.client.HSet(ctx, b.prefix+"h", "f", "v").Err())
	_, _, err := b.store.Reserve(ctx, "h", fp(1), time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redisstore: reserve")
}

func TestNilClient(t *testing.T) {
	for name, c := range map[string]redis.UniversalClient{
		"nil":                nil,
		"nil *Client":        (*redis.Client)(nil),
		"nil *ClusterClient": (*redis.ClusterClient)(nil),
		"nil *Ring":          (*redis.Ring)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			s := redisstore.New(c, redisstore.Config{})
			_, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
			assert.ErrorIs(t, err, redisstore.ErrNilClient)
			assert.ErrorIs(t, s.Complete(ctx, "k", 1, okResponse("x"), time.Hour), redisstore.ErrNilClient)
			assert.ErrorIs(t, s.Release(ctx, "k", 1), redisstore.ErrNilClient)
			_, _, err = s.Lookup(ctx, "k")
			assert.ErrorIs(t, err, redisstore.ErrNilClient)
		})
	}
}

func TestRedisErrors(t *testing.T) {
	t.Run("out of memory", func(t *testing.T) {
		b, mr := miniBackend(t)
		mr.SetError("OOM command not allowed when used memory > 'maxmemory'.")
		_, _, err := b.store.Reserve(ctx, "k", fp(1), time.Minute)
		assert.ErrorIs(t, err, idempotency.ErrStoreFull)
		assert.ErrorContains(t, err, "redisstore: reserve")
	})
	t.Run("other error", func(t *testing.T) {
		b, mr := miniBackend(t)
		rec, _, err := b.store.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		mr.SetError("LOADING Redis is loading the dataset in memory")
		for op, err := range map[string]error{
			"reserve":  second(b.store.Reserve(ctx, "j", fp(1), time.Minute)),
			"complete": b.store.Complete(ctx, "k", rec.Token, okResponse("x"), time.Hour),
			"release":  b.store.Release(ctx, "k", rec.Token),
			"lookup":   second(b.store.Lookup(ctx, "k")),
		} {
			require.Error(t, err, op)
			assert.ErrorContains(t, err, "redisstore: "+op+": LOADING", op)
			assert.NotErrorIs(t, err, idempotency.ErrStoreFull, op)
			assert.NotErrorIs(t, err, idempotency.ErrLeaseLost, op)
		}
		mr.SetError("")
		require.NoError(t, b.store.Complete(ctx, "k", rec.Token, okResponse("x"), time.Hour), "the reservation survived")
	})
	t.Run("server gone", func(t *testing.T) {
		mr := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		s := redisstore.New(c, redisstore.Config{})
		mr.Close()
		_, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		assert.ErrorContains(t, err, "redisstore: reserve")
		assert.NotErrorIs(t, err, idempotency.ErrLeaseLost)
	})
	t.Run("cancelled context", func(t *testing.T) {
		b, _ := miniBackend(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err := b.store.Reserve(cctx, "k", fp(1), time.Minute)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// second returns the error of a three-result call.
func second[A, B any](_ A, _ B, err error) error { return err }
