package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

// envAddr names a real Redis to run the store tests against as well.
const envAddr = "REBOUND_REDIS_ADDR"

func fp(b byte) idempotency.Fingerprint { return idempotency.Fingerprint{b} }

func okResponse(body string) *idempotency.Response {
	return &idempotency.Response{Status: 201, Body: []byte(body)}
}

// backend is a Redis server a test runs against, with a store on it.
type backend struct {
	client redis.UniversalClient
	store  *redisstore.Store
	prefix string
	// fastForward moves the server's clock; nil for a real Redis, whose
	// clock a test cannot move without sleeping.
	fastForward func(time.Duration)
}

// newClient returns a client of addr that is closed when t ends.
func newClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// miniBackend starts a miniredis for t.
func miniBackend(t testing.TB) (backend, *miniredis.Miniredis) {
	mr := miniredis.RunT(t)
	c := newClient(t, mr.Addr())
	return backend{
		client:      c,
		store:       redisstore.New(c, redisstore.Config{}),
		prefix:      redisstore.DefaultPrefix,
		fastForward: mr.FastForward,
	}, mr
}

// realBackend connects to the Redis named by REBOUND_REDIS_ADDR, with a
// prefix of t's own whose keys are deleted when t ends.
func realBackend(t testing.TB, addr string) backend {
	c := newClient(t, addr)
	require.NoError(t, c.Ping(ctx).Err(), "%s=%s", envAddr, addr)
	prefix := fmt.Sprintf("rebound:test:%x:", rand.Uint64())
	t.Cleanup(func() {
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
	})
	return backend{client: c, store: redisstore.New(c, redisstore.Config{Prefix: prefix}), prefix: prefix}
}

// eachBackend runs f against miniredis and, when REBOUND_REDIS_ADDR is
// set, against that real Redis too.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Run("miniredis", func(t *testing.T) {
		b, _ := miniBackend(t)
		f(t, b)
	})
	t.Run("redis", func(t *testing.T) {
		addr := os.Getenv(envAddr)
		if addr == "" {
			t.Skip(envAddr + " not set")
		}
		f(t, realBackend(t, addr))
	})
}

// needClock skips t on a backend whose clock cannot be moved.
func needClock(t *testing.T, b backend) {
	if b.fastForward == nil {
		t.Skip("moving the clock of a real Redis would need a real sleep")
	}
}

func TestLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.store
		_, found, err := s.Lookup(ctx, "k")
		require.NoError(t, err)
		assert.False(t, found)

		before := time.Now()
		rec, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		require.True(t, reserved)
		assert.NotZero(t, rec.Token)
		assert.True(t, rec.InFlight())
		assert.Equal(t, fp(1), rec.Fingerprint)
		assert.WithinRange(t, rec.Expires, before.Add(time.Minute), time.Now().Add(time.Minute))

		again, reserved, err := s.Reserve(ctx, "k", fp(2), time.Minute)
		require.NoError(t, err)
		assert.False(t, reserved, "a held key is not reserved twice")
		assert.Equal(t, rec.Token, again.Token, "the existing record comes back unchanged")
		assert.Equal(t, fp(1), again.Fingerprint)
		assert.True(t, again.InFlight())
		assert.WithinDuration(t, rec.Expires, again.Expires, time.Second)

		assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token+1, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Complete(ctx, "other", rec.Token, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)
		require.NoError(t, s.Complete(ctx, "k", rec.Token, okResponse("done"), time.Hour))
		assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token, okResponse("twice"), time.Hour), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Release(ctx, "k", rec.Token), idempotency.ErrLeaseLost, "a completed key is not released")

		got, found, err := s.Lookup(ctx, "k")
		require.NoError(t, err)
		require.True(t, found)
		assert.False(t, got.InFlight())
		assert.Equal(t, rec.Token, got.Token)
		assert.Equal(t, fp(1), got.Fingerprint, "completing keeps the fingerprint")
		assert.Equal(t, 201, got.Response.Status)
		assert.Equal(t, "done", string(got.Response.Body))
		assert.WithinDuration(t, time.Now().Add(time.Hour), got.Expires, 5*time.Second)

		got, reserved, err = s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		assert.False(t, reserved)
		assert.Equal(t, "done", string(got.Response.Body))

		ttl, err := b.client.PTTL(ctx, b.prefix+"k").Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, time.Minute, "the TTL replaced the lease as the key's expiry")
	})
}

func TestRelease(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.store
		rec, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, err)
		assert.ErrorIs(t, s.Release(ctx, "k", rec.Token+1), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Release(ctx, "other", rec.Token), idempotency.ErrLeaseLost)
		require.NoError(t, s.Release(ctx, "k", rec.Token))
		assert.ErrorIs(t, s.Release(ctx, "k", rec.Token), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost)
		n, err := b.client.Exists(ctx, b.prefix+"k").Result()
		require.NoError(t, err)
		assert.Zero(t, n, "released key deleted")

		rec2, reserved, err := s.Reserve(ctx, "k", fp(2), time.Minute)
		require.NoError(t, err)
		assert.True(t, reserved, "a released key is free")
		assert.NotEqual(t, rec.Token, rec2.Token)
		assert.Equal(t, fp(2), rec2.Fingerprint)
	})
}

func TestLeaseExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		needClock(t, b)
		s := b.store
		a, _, err := s.Reserve(ctx, "a", fp(1), 10*time.Second)
		require.NoError(t, err)

		b.fastForward(10*time.Second - time.Millisecond)
		_, found, err := s.Lookup(ctx, "a")
		require.NoError(t, err)
		assert.True(t, found, "held until the lease ends")

		b.fastForward(time.Millisecond)
		_, found, err = s.Lookup(ctx, "a")
		require.NoError(t, err)
		assert.False(t, found, "an expired lease frees the key")
		assert.ErrorIs(t, s.Complete(ctx, "a", a.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Release(ctx, "a", a.Token), idempotency.ErrLeaseLost)

		a2, reserved, err := s.Reserve(ctx, "a", fp(1), 10*time.Second)
		require.NoError(t, err)
		assert.True(t, reserved)
		assert.NotEqual(t, a.Token, a2.Token)
		assert.ErrorIs(t, s.Complete(ctx, "a", a.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost,
			"the old token cannot complete the new reservation")
		require.NoError(t, s.Complete(ctx, "a", a2.Token, okResponse("new"), time.Hour))
	})
}

func TestTTLExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		needClock(t, b)
		s := b.store
		rec, _, err := s.Reserve(ctx, "b", fp(1), 10*time.Second)
		require.NoError(t, err)
		b.fastForward(9 * time.Second)
		require.NoError(t, s.Complete(ctx, "b", rec.Token, okResponse("b"), time.Hour))

		b.fastForward(time.Hour - time.Millisecond)
		got, found, err := s.Lookup(ctx, "b")
		require.NoError(t, err)
		require.True(t, found, "kept for its TTL from completion, not from the reservation")
		assert.Equal(t, "b", string(got.Response.Body))

		b.fastForward(time.Millisecond)
		_, found, err = s.Lookup(ctx, "b")
		require.NoError(t, err)
		assert.False(t, found, "gone when its TTL ends")
		_, reserved, err := s.Reserve(ctx, "b", fp(2), time.Minute)
		require.NoError(t, err)
		assert.True(t, reserved, "an expired response frees the key")
	})
}

func TestNonPositiveDurations(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.store
		rec, reserved, err := s.Reserve(ctx, "lease0", fp(1), 0)
		require.NoError(t, err)
		assert.True(t, reserved, "a zero lease still reserves")
		_, found, err := s.Lookup(ctx, "lease0")
		require.NoError(t, err)
		assert.False(t, found, "but has already expired")
		assert.ErrorIs(t, s.Complete(ctx, "lease0", rec.Token, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)

		rec, _, err = s.Reserve(ctx, "ttl0", fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, "ttl0", rec.Token, okResponse("x"), -time.Second))
		_, found, err = s.Lookup(ctx, "ttl0")
		require.NoError(t, err)
		assert.False(t, found, "a response with no TTL is not kept")

		rec, _, err = s.Reserve(ctx, "sub-ms", fp(1), time.Microsecond)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, "sub-ms", rec.Token, okResponse("x"), time.Hour),
			"a lease under a millisecond is rounded up, not dropped")
	})
}

func TestResponseKept(t *testing.T) {
	tests := []struct {
		name string
		resp *idempotency.Response
		want *idempotency.Response
	}{
		{"headers and body", &idempotency.Response{
			Status: 201,
			Header: map[string][]string{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}, "X-Empty": {""}},
			Body:   []byte(`{"id":7}`),
		}, nil},
		{"no header, empty body", &idempotency.Response{Status: 204, Body: []byte{}}, nil},
		{"nil body", &idempotency.Response{Status: 200, Header: map[string][]string{}}, nil},
		{"binary body", &idempotency.Response{Status: 200, Body: []byte{0, 1, 2, 0xff, '\n', 0}}, nil},
		{"not replayable", &idempotency.Response{Status: 200, Header: map[string][]string{"X": {"y"}}, NotReplayable: true}, nil},
		{"nil response", nil, &idempotency.Response{Status: 200, NotReplayable: true}},
		{"too large", &idempotency.Response{Status: 201, Header: map[string][]string{"X": {"y"}}, Body: make([]byte, 5<<20)},
			&idempotency.Response{Status: 201, NotReplayable: true}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec, reserved, err := b.store.Reserve(ctx, tt.name, fp(3), time.Minute)
				require.NoError(t, err)
				require.True(t, reserved)
				require.NoError(t, b.store.Complete(ctx, tt.name, rec.Token, tt.resp, time.Hour))
				got, found, err := b.store.Lookup(ctx, tt.name)
				require.NoError(t, err)
				require.True(t, found)
				want := tt.want
				if want == nil {
					want = tt.resp
				}
				assert.Equal(t, want, got.Response)
			})
		}
	})
}

func TestMaxResponseBytes(t *testing.T) {
	b, _ := miniBackend(t)
	s := redisstore.New(b.client, redisstore.Config{MaxResponseBytes: 100})
	for _, size := range []int{50, 200} {
		key := fmt.Sprint(size)
		rec, _, err := s.Reserve(ctx, key, fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, key, rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, size)}, time.Hour))
		got, _, err := s.Lookup(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, size > 100, got.Response.NotReplayable, key)
		assert.Equal(t, 201, got.Response.Status, key)
	}
}

func TestPrefix(t *testing.T) {
	b, mr := miniBackend(t)
	s := redisstore.New(b.client, redisstore.Config{Prefix: "app:"})
	_, _, err := s.Reserve(ctx, "scope\nkey", fp(1), time.Minute)
	require.NoError(t, err)
	assert.True(t, mr.Exists("app:scope\nkey"))
	assert.False(t, mr.Exists(redisstore.DefaultPrefix+"scope\nkey"))
	_, found, err := b.store.Lookup(ctx, "scope\nkey")
	require.NoError(t, err)
	assert.False(t, found, "stores with different prefixes do not share keys")
}

func TestOneReservationPerKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var wg sync.WaitGroup
		var winners atomic.Int32
		tokens := make(chan uint64, 50)
		for range 50 {
			wg.Go(func() {
				rec, reserved, err := b.store.Reserve(ctx, "k", fp(1), time.Minute)
				if !assert.NoError(t, err) {
					return
				}
				if reserved {
					winners.Add(1)
				}
				tokens <- rec.Token
			})
		}
		wg.Wait()
		close(tokens)
		assert.Equal(t, int32(1), winners.Load())
		first := <-tokens
		for tok := range tokens {
			assert.Equal(t, first, tok, "every loser sees the winner's reservation")
		}
	})
}
