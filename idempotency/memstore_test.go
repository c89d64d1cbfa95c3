package idempotency_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ctx = context.Background()

func fp(b byte) idempotency.Fingerprint { return idempotency.Fingerprint{b} }

func okResponse(body string) *idempotency.Response {
	return &idempotency.Response{Status: 201, Body: []byte(body)}
}

func TestMemoryStoreLifecycle(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})

	_, found, err := s.Lookup(ctx, "k")
	require.NoError(t, err)
	assert.False(t, found)

	rec, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
	require.NoError(t, err)
	require.True(t, reserved)
	assert.NotZero(t, rec.Token)
	assert.True(t, rec.InFlight())
	assert.Equal(t, fp(1), rec.Fingerprint)

	again, reserved, err := s.Reserve(ctx, "k", fp(2), time.Minute)
	require.NoError(t, err)
	assert.False(t, reserved, "a held key is not reserved twice")
	assert.Equal(t, rec, again, "the existing record comes back unchanged")

	assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token+1, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Complete(ctx, "other", rec.Token, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)
	require.NoError(t, s.Complete(ctx, "k", rec.Token, okResponse("done"), time.Hour))
	assert.ErrorIs(t, s.Complete(ctx, "k", rec.Token, okResponse("twice"), time.Hour), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Release(ctx, "k", rec.Token), idempotency.ErrLeaseLost, "a completed key is not released")

	got, found, err := s.Lookup(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	assert.False(t, got.InFlight())
	assert.Equal(t, "done", string(got.Response.Body))

	got, reserved, err = s.Reserve(ctx, "k", fp(1), time.Minute)
	require.NoError(t, err)
	assert.False(t, reserved)
	assert.Equal(t, "done", string(got.Response.Body))
}

func TestMemoryStoreRelease(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	rec, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Release(ctx, "k", rec.Token+1), idempotency.ErrLeaseLost)
	require.NoError(t, s.Release(ctx, "k", rec.Token))
	assert.ErrorIs(t, s.Release(ctx, "k", rec.Token), idempotency.ErrLeaseLost)
	assert.Zero(t, s.Len())
	assert.Zero(t, s.Bytes())

	rec2, reserved, err := s.Reserve(ctx, "k", fp(2), time.Minute)
	require.NoError(t, err)
	assert.True(t, reserved, "a released key is free")
	assert.NotEqual(t, rec.Token, rec2.Token)
}

func TestMemoryStoreExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		a, _, _ := s.Reserve(ctx, "a", fp(1), 10*time.Second)
		b, _, _ := s.Reserve(ctx, "b", fp(1), 10*time.Second)
		require.NoError(t, s.Complete(ctx, "b", b.Token, okResponse("b"), time.Hour))
		assert.Equal(t, 2, s.Len())

		time.Sleep(10 * time.Second) // a's lease ends
		_, found, _ := s.Lookup(ctx, "a")
		assert.False(t, found, "an expired lease frees the key")
		assert.ErrorIs(t, s.Complete(ctx, "a", a.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost)
		a2, reserved, _ := s.Reserve(ctx, "a", fp(1), 10*time.Second)
		assert.True(t, reserved)
		assert.NotEqual(t, a.Token, a2.Token)

		_, found, _ = s.Lookup(ctx, "b")
		assert.True(t, found, "b is kept for its TTL")
		time.Sleep(time.Hour - 10*time.Second - time.Nanosecond)
		_, found, _ = s.Lookup(ctx, "b")
		assert.True(t, found, "one nanosecond before its TTL ends")
		time.Sleep(time.Nanosecond)
		_, found, _ = s.Lookup(ctx, "b")
		assert.False(t, found, "gone when its TTL ends")
		assert.Zero(t, s.Len())
		assert.Zero(t, s.Bytes())
	})
}

func TestMemoryStoreEntryBound(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 3})
	var tokens []uint64
	for i := range 3 {
		rec, reserved, err := s.Reserve(ctx, strconv.Itoa(i), fp(1), time.Minute)
		require.NoError(t, err)
		require.True(t, reserved)
		tokens = append(tokens, rec.Token)
	}
	_, _, err := s.Reserve(ctx, "3", fp(1), time.Minute)
	assert.ErrorIs(t, err, idempotency.ErrStoreFull, "in-flight keys are never evicted")

	// Complete 1 then 0: 1 is the oldest completion and goes first.
	require.NoError(t, s.Complete(ctx, "1", tokens[1], okResponse("1"), time.Hour))
	require.NoError(t, s.Complete(ctx, "0", tokens[0], okResponse("0"), time.Hour))
	_, reserved, err := s.Reserve(ctx, "3", fp(1), time.Minute)
	require.NoError(t, err)
	assert.True(t, reserved)
	_, found, _ := s.Lookup(ctx, "1")
	assert.False(t, found, "oldest completed entry evicted")
	for _, k := range []string{"0", "2", "3"} {
		_, found, _ := s.Lookup(ctx, k)
		assert.True(t, found, k)
	}
	assert.Equal(t, 3, s.Len())
}

func TestMemoryStoreByteBound(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxBytes: 4096})
	big := make([]byte, 1500)
	for i := range 2 {
		k := strconv.Itoa(i)
		rec, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 200, Body: big}, time.Hour))
	}
	rec, _, err := s.Reserve(ctx, "2", fp(1), time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "2", rec.Token, &idempotency.Response{Status: 200, Body: big}, time.Hour))
	_, found, _ := s.Lookup(ctx, "0")
	assert.False(t, found, "oldest response evicted to make room")
	_, found, _ = s.Lookup(ctx, "1")
	assert.True(t, found)
	assert.LessOrEqual(t, s.Bytes(), int64(4096))

	// A response that cannot fit at all keeps the key used, without a body.
	rec, _, err = s.Reserve(ctx, "huge", fp(1), time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "huge", rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, 8192)}, time.Hour))
	got, found, _ := s.Lookup(ctx, "huge")
	require.True(t, found)
	assert.True(t, got.Response.NotReplayable)
	assert.Equal(t, 201, got.Response.Status)
	assert.Nil(t, got.Response.Body)
	assert.LessOrEqual(t, s.Bytes(), int64(4096))
}

func TestMemoryStoreOneReservationPerKey(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for range 50 {
		wg.Go(func() {
			_, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
			assert.NoError(t, err)
			if reserved {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, winners)
}
