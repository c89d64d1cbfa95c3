package idempotency_test

import (
	"context"
	"strconv"
	"strings"
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

// TestMemoryStoreEntryBound: a full store refuses new keys (fail closed)
// rather than evict a record before it expires, in flight or completed;
// room comes back as records expire.
func TestMemoryStoreEntryBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 3, MaxScopeShare: 1})
		for i := range 3 {
			k := strconv.Itoa(i)
			rec, reserved, err := s.Reserve(ctx, k, fp(1), time.Minute)
			require.NoError(t, err)
			require.True(t, reserved)
			if i < 2 {
				require.NoError(t, s.Complete(ctx, k, rec.Token, okResponse(k), time.Duration(i+1)*time.Hour))
			}
		}
		_, _, err := s.Reserve(ctx, "3", fp(1), time.Minute)
		assert.ErrorIs(t, err, idempotency.ErrStoreFull, "completed keys are never evicted")
		for _, k := range []string{"0", "1", "2"} {
			_, found, _ := s.Lookup(ctx, k)
			assert.True(t, found, k)
		}
		time.Sleep(time.Hour) // "0" expires; "2"'s lease expired long ago
		_, reserved, err := s.Reserve(ctx, "3", fp(1), time.Minute)
		require.NoError(t, err)
		assert.True(t, reserved)
		assert.Equal(t, 2, s.Len())
	})
}

// TestMemoryStoreByteBound: a response that does not fit is kept without
// its body (the key stays used), and a new key that does not fit is
// refused; no completed response is evicted for either.
func TestMemoryStoreByteBound(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxBytes: 4096, MaxScopeShare: 1})
	big := make([]byte, 1500)
	for i := range 3 {
		k := strconv.Itoa(i)
		rec, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 201, Body: big}, time.Hour))
	}
	for i, want := range []bool{false, false, true} {
		got, found, _ := s.Lookup(ctx, strconv.Itoa(i))
		require.True(t, found, "never evicted")
		assert.Equal(t, want, got.Response.NotReplayable, i)
		assert.Equal(t, 201, got.Response.Status)
	}
	assert.LessOrEqual(t, s.Bytes(), int64(4096))
	_, _, err := s.Reserve(ctx, strings.Repeat("k", 1000), fp(1), time.Minute)
	assert.ErrorIs(t, err, idempotency.ErrStoreFull)
}

// TestMemoryStoreScopeShare: one scope may hold at most its share of the
// entries and of the bytes, and filling it does not stop other scopes.
func TestMemoryStoreScopeShare(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 8}) // default share: 1/4, 2 keys
		for i := range 2 {
			_, reserved, err := s.Reserve(ctx, idempotency.StoreKey("greedy", strconv.Itoa(i)), fp(1), time.Minute)
			require.NoError(t, err)
			require.True(t, reserved)
		}
		_, _, err := s.Reserve(ctx, idempotency.StoreKey("greedy", "2"), fp(1), time.Minute)
		assert.ErrorIs(t, err, idempotency.ErrStoreFull)
		for _, scope := range []string{"alice", "bob", "greedy\nlookalike"} {
			_, reserved, err := s.Reserve(ctx, idempotency.StoreKey(scope, "0"), fp(1), time.Minute)
			require.NoError(t, err, scope)
			assert.True(t, reserved, scope)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxBytes: 8000, MaxScopeShare: 0.5})
		k := idempotency.StoreKey("greedy", "0")
		rec, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, 4500)}, time.Hour))
		got, _, _ := s.Lookup(ctx, k)
		assert.True(t, got.Response.NotReplayable, "over the scope's 4000 bytes: kept without its body")
		var err2 error
		for i := range 100 {
			k := idempotency.StoreKey("greedy", strconv.Itoa(i+1))
			rec, _, err2 = s.Reserve(ctx, k, fp(1), time.Minute)
			if err2 != nil {
				break
			}
			require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, 300)}, time.Hour))
		}
		assert.ErrorIs(t, err2, idempotency.ErrStoreFull, "the scope holds its share")
		assert.LessOrEqual(t, s.Bytes(), int64(4000+100), "the scope's share, and a few bytes of the body-less record")
		k = idempotency.StoreKey("alice", "0")
		rec, _, err = s.Reserve(ctx, k, fp(1), time.Minute)
		require.NoError(t, err, "another scope still has room")
		require.NoError(t, s.Complete(ctx, k, rec.Token, &idempotency.Response{Status: 201, Body: make([]byte, 3000)}, time.Hour))
		got, _, _ = s.Lookup(ctx, k)
		assert.False(t, got.Response.NotReplayable)
	})
}

// TestMemoryStoreStaleHolder: a holder whose lease ended cannot renew or
// complete, even after the key is reserved again: its token is fenced off.
func TestMemoryStoreStaleHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		old, _, _ := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.NoError(t, s.Renew(ctx, "k", old.Token, time.Minute))
		time.Sleep(59 * time.Second)
		_, reserved, _ := s.Reserve(ctx, "k", fp(1), time.Minute)
		assert.False(t, reserved, "renewed: still held a minute after the renewal")
		time.Sleep(time.Second)
		cur, reserved, _ := s.Reserve(ctx, "k", fp(1), time.Minute)
		require.True(t, reserved, "the lease ended")
		assert.Greater(t, cur.Token, old.Token)
		assert.ErrorIs(t, s.Renew(ctx, "k", old.Token, time.Minute), idempotency.ErrLeaseLost)
		assert.ErrorIs(t, s.Complete(ctx, "k", old.Token, okResponse("stale"), time.Hour), idempotency.ErrLeaseLost)
		require.NoError(t, s.Complete(ctx, "k", cur.Token, okResponse("current"), time.Hour))
		assert.ErrorIs(t, s.Renew(ctx, "k", cur.Token, time.Minute), idempotency.ErrLeaseLost, "a completed record is not renewed")
		got, _, _ := s.Lookup(ctx, "k")
		assert.Equal(t, "current", string(got.Response.Body))
	})
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
