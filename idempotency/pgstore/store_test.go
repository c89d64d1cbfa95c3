package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ctx = context.Background()

func fp(b byte) idempotency.Fingerprint { return idempotency.Fingerprint{b} }

func okResponse(body string) *idempotency.Response {
	return &idempotency.Response{Status: 201, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(body)}
}

// newStore returns a migrated store in a schema of t's own, and its pool.
func newStore(t testing.TB, cfg pgstore.Config) (*pgstore.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	s, err := pgstore.New(pool, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	require.NoError(t, s.Migrate(ctx))
	return s, pool
}

// age moves every record of the default table d into the past, as if the
// database's clock had moved on by d.
func age(t testing.TB, pool *pgxpool.Pool, d time.Duration) {
	t.Helper()
	_, err := pool.Exec(ctx, "UPDATE rebound_idempotency SET expires_at = expires_at - make_interval(secs => $1)", d.Seconds())
	require.NoError(t, err)
}

func TestLifecycle(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	_, found, err := s.Lookup(ctx, "a\nk")
	require.NoError(t, err)
	assert.False(t, found)

	before := time.Now()
	rec, reserved, err := s.Reserve(ctx, "a\nk", fp(1), time.Minute)
	require.NoError(t, err)
	require.True(t, reserved)
	assert.NotZero(t, rec.Token)
	assert.True(t, rec.InFlight())
	assert.Equal(t, fp(1), rec.Fingerprint)
	assert.WithinRange(t, rec.Expires, before.Add(time.Minute), time.Now().Add(time.Minute))

	again, reserved, err := s.Reserve(ctx, "a\nk", fp(2), time.Minute)
	require.NoError(t, err)
	assert.False(t, reserved, "a held key is not reserved twice")
	assert.Equal(t, rec.Token, again.Token)
	assert.Equal(t, fp(1), again.Fingerprint, "the existing record, unchanged")
	assert.True(t, again.InFlight())
	assert.WithinDuration(t, rec.Expires, again.Expires, 5*time.Second)

	assert.ErrorIs(t, s.Complete(ctx, "a\nk", rec.Token+1, okResponse("x"), time.Hour), idempotency.ErrLeaseLost)
	require.NoError(t, s.Complete(ctx, "a\nk", rec.Token, okResponse("done"), time.Hour))
	assert.ErrorIs(t, s.Complete(ctx, "a\nk", rec.Token, okResponse("again"), time.Hour), idempotency.ErrLeaseLost,
		"a completed key is not completed twice")
	assert.ErrorIs(t, s.Release(ctx, "a\nk", rec.Token), idempotency.ErrLeaseLost, "a completed key is not released")

	got, found, err := s.Lookup(ctx, "a\nk")
	require.NoError(t, err)
	require.True(t, found)
	require.NotNil(t, got.Response)
	assert.Equal(t, okResponse("done"), got.Response)
	assert.WithinRange(t, got.Expires, before.Add(time.Hour-5*time.Second), time.Now().Add(time.Hour))

	replay, reserved, err := s.Reserve(ctx, "a\nk", fp(1), time.Minute)
	require.NoError(t, err)
	assert.False(t, reserved)
	assert.Equal(t, okResponse("done"), replay.Response)
}

func TestRelease(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Release(ctx, "\nk", rec.Token+1), idempotency.ErrLeaseLost)
	require.NoError(t, s.Release(ctx, "\nk", rec.Token))
	assert.ErrorIs(t, s.Release(ctx, "\nk", rec.Token), idempotency.ErrLeaseLost, "released once")
	_, found, err := s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.False(t, found)

	next, reserved, err := s.Reserve(ctx, "\nk", fp(2), time.Minute)
	require.NoError(t, err)
	assert.True(t, reserved, "a released key is free")
	assert.NotEqual(t, rec.Token, next.Token)
	assert.ErrorIs(t, s.Complete(ctx, "\nk", rec.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost,
		"the first reservation's token no longer completes the key")
}

func TestRenew(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	age(t, pool, 50*time.Second)
	require.NoError(t, s.Renew(ctx, "\nk", rec.Token, time.Minute))
	age(t, pool, 50*time.Second)
	_, found, err := s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.True(t, found, "renewed 50 s ago for a minute: still held")
	assert.ErrorIs(t, s.Renew(ctx, "\nk", rec.Token+1, time.Minute), idempotency.ErrLeaseLost, "another token")
	require.NoError(t, s.Complete(ctx, "\nk", rec.Token, okResponse("x"), time.Hour))
	assert.ErrorIs(t, s.Renew(ctx, "\nk", rec.Token, time.Minute), idempotency.ErrLeaseLost, "a completed record is never renewed")

	old, _, err := s.Reserve(ctx, "\nold", fp(1), time.Minute)
	require.NoError(t, err)
	age(t, pool, 61*time.Second)
	assert.ErrorIs(t, s.Renew(ctx, "\nold", old.Token, time.Minute), idempotency.ErrLeaseLost, "an ended lease is not revived")
	next, reserved, err := s.Reserve(ctx, "\nold", fp(1), time.Minute)
	require.NoError(t, err)
	require.True(t, reserved)
	assert.Greater(t, next.Token, old.Token, "a later reservation has a larger fencing token")
	assert.ErrorIs(t, s.Renew(ctx, "\nold", old.Token, time.Minute), idempotency.ErrLeaseLost,
		"the stalled holder cannot renew the key reserved again since")
	require.NoError(t, s.Renew(ctx, "\nold", next.Token, 0))
	_, found, err = s.Lookup(ctx, "\nold")
	require.NoError(t, err)
	assert.False(t, found, "a zero lease ends it now")
}

func TestLeaseExpiry(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	age(t, pool, 61*time.Second)

	_, found, err := s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.False(t, found, "an expired lease is no record")
	assert.ErrorIs(t, s.Complete(ctx, "\nk", rec.Token, okResponse("late"), time.Hour), idempotency.ErrLeaseLost)

	next, reserved, err := s.Reserve(ctx, "\nk", fp(2), time.Minute)
	require.NoError(t, err)
	assert.True(t, reserved, "an expired lease is taken over")
	assert.Equal(t, fp(2), next.Fingerprint)
	assert.ErrorIs(t, s.Release(ctx, "\nk", rec.Token), idempotency.ErrLeaseLost)
	require.NoError(t, s.Complete(ctx, "\nk", next.Token, okResponse("second"), time.Hour))

	// A lease that ended is released all the same, but reported lost.
	old, _, err := s.Reserve(ctx, "\nold", fp(1), time.Minute)
	require.NoError(t, err)
	age(t, pool, 61*time.Second)
	assert.ErrorIs(t, s.Release(ctx, "\nold", old.Token), idempotency.ErrLeaseLost)
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM rebound_idempotency WHERE key = 'old'").Scan(&n))
	assert.Zero(t, n, "the expired reservation was deleted")
}

func TestTTLExpiry(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "\nk", rec.Token, okResponse("done"), time.Hour))
	age(t, pool, 59*time.Minute)
	_, found, err := s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.True(t, found, "still within the TTL")
	age(t, pool, 2*time.Minute)
	_, found, err = s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.False(t, found, "past the TTL")
	next, reserved, err := s.Reserve(ctx, "\nk", fp(2), time.Minute)
	require.NoError(t, err)
	assert.True(t, reserved, "an expired response is replaced")
	assert.True(t, next.InFlight(), "and the new reservation holds no old response")
}

func TestNonPositiveDurations(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	rec, reserved, err := s.Reserve(ctx, "\nk", fp(1), 0)
	require.NoError(t, err)
	require.True(t, reserved)
	assert.ErrorIs(t, s.Complete(ctx, "\nk", rec.Token, okResponse("x"), time.Hour), idempotency.ErrLeaseLost,
		"a zero lease has ended")
	rec, reserved, err = s.Reserve(ctx, "\nk", fp(1), -time.Minute)
	require.NoError(t, err)
	require.True(t, reserved, "an ended lease is free")

	rec, _, err = s.Reserve(ctx, "\nt", fp(1), time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "\nt", rec.Token, okResponse("x"), 0))
	_, found, err := s.Lookup(ctx, "\nt")
	require.NoError(t, err)
	assert.False(t, found, "a zero TTL ends at once")
}

func TestResponseKept(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	cases := map[string]*idempotency.Response{
		"headers and body": {Status: 201, Header: http.Header{
			"Location": {"/orders/1"}, "X-Multi": {"a", "", "b"}, "X-Bytes": {"\x00\xff\r"},
		}, Body: []byte("created")},
		"nil header, empty body": {Status: 204, Body: []byte{}},
		"empty header, nil body": {Status: 200, Header: http.Header{}},
		"not replayable":         {Status: 200, Header: http.Header{"A": {"b"}}, NotReplayable: true},
		"outcome unknown":        {Status: 500, NotReplayable: true, OutcomeUnknown: true},
		"unknown, not marked":    {Status: 500, Body: []byte("x"), OutcomeUnknown: true},
		"status 999":             {Status: 999},
	}
	want := map[string]*idempotency.Response{
		"not replayable":      {Status: 200, NotReplayable: true},
		"unknown, not marked": {Status: 500, NotReplayable: true, OutcomeUnknown: true},
	}
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			key := "\n" + name
			rec, _, err := s.Reserve(ctx, key, fp(1), time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.Complete(ctx, key, rec.Token, resp, time.Hour))
			got, found, err := s.Lookup(ctx, key)
			require.NoError(t, err)
			require.True(t, found)
			w := resp
			if want[name] != nil {
				w = want[name]
			}
			assert.Equal(t, w, got.Response)
		})
	}
	t.Run("nil response", func(t *testing.T) {
		rec, _, err := s.Reserve(ctx, "\nnil", fp(1), time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, "\nnil", rec.Token, nil, time.Hour))
		got, _, err := s.Lookup(ctx, "\nnil")
		require.NoError(t, err)
		assert.Equal(t, &idempotency.Response{Status: 200, NotReplayable: true}, got.Response)
	})
	for _, status := range []int{0, 99, 1000, -1} {
		rec, _, err := s.Reserve(ctx, fmt.Sprint("\nbad", status), fp(1), time.Minute)
		require.NoError(t, err)
		err = s.Complete(ctx, fmt.Sprint("\nbad", status), rec.Token, &idempotency.Response{Status: status}, time.Hour)
		assert.ErrorIs(t, err, pgstore.ErrInvalidStatus, "status %d", status)
	}
}

func TestMaxResponseBytes(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{MaxResponseBytes: 100})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	big := &idempotency.Response{Status: 201, Header: http.Header{"A": {"b"}}, Body: make([]byte, 100)}
	require.NoError(t, s.Complete(ctx, "\nk", rec.Token, big, time.Hour))
	got, _, err := s.Lookup(ctx, "\nk")
	require.NoError(t, err)
	assert.Equal(t, &idempotency.Response{Status: 201, NotReplayable: true}, got.Response,
		"a response over the bound keeps its key used, without its body")
}

func TestScopes(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	keys := []string{"k", "\nk", "a\nk", "b\nk", "a\nb\nk", idempotency.StoreKey("scope", "key")}
	for _, k := range keys {
		_, reserved, err := s.Reserve(ctx, k, fp(1), time.Minute)
		require.NoError(t, err)
		assert.True(t, reserved, "%q is a key of its own", k)
	}
	var scope []byte
	var key string
	require.NoError(t, pool.QueryRow(ctx, "SELECT scope, key FROM rebound_idempotency WHERE key = 'key'").Scan(&scope, &key))
	assert.Equal(t, "scope\n", string(scope))
	assert.Equal(t, "key", key)

	for _, k := range []string{"\nk\x00", "a\n\xff"} {
		_, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
		assert.ErrorIs(t, err, pgstore.ErrInvalidKey, "%q", k)
	}
}

func TestOneReservationPerKey(t *testing.T) {
	s, _ := newStore(t, pgstore.Config{})
	const n = 50
	var reserved atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, ok, err := s.Reserve(ctx, "\nk", fp(byte(i)), time.Minute)
			assert.NoError(t, err)
			if ok {
				reserved.Add(1)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, reserved.Load())
}

func TestMalformedRow(t *testing.T) {
	s, pool := newStore(t, pgstore.Config{})
	rec, _, err := s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, "\nk", rec.Token, okResponse("x"), time.Hour))
	_, err = pool.Exec(ctx, `UPDATE rebound_idempotency SET header = '\x05'::bytea`)
	require.NoError(t, err)
	_, _, err = s.Lookup(ctx, "\nk")
	assert.ErrorIs(t, err, pgstore.ErrMalformed)
	_, _, err = s.Reserve(ctx, "\nk", fp(1), time.Minute)
	assert.ErrorIs(t, err, pgstore.ErrMalformed)

	_, err = pool.Exec(ctx, `UPDATE rebound_idempotency SET header = NULL, fingerprint = '\x01'::bytea`)
	require.NoError(t, err)
	_, _, err = s.Lookup(ctx, "\nk")
	assert.ErrorIs(t, err, pgstore.ErrMalformed)
}

func TestNilPool(t *testing.T) {
	s, err := pgstore.New(nil, pgstore.Config{})
	require.NoError(t, err)
	_, _, err = s.Reserve(ctx, "\nk", fp(1), time.Minute)
	assert.ErrorIs(t, err, pgstore.ErrNilPool)
	assert.ErrorIs(t, s.Complete(ctx, "\nk", 1, nil, time.Hour), pgstore.ErrNilPool)
	assert.ErrorIs(t, s.Release(ctx, "\nk", 1), pgstore.ErrNilPool)
	_, _, err = s.Lookup(ctx, "\nk")
	assert.ErrorIs(t, err, pgstore.ErrNilPool)
	assert.ErrorIs(t, s.Migrate(ctx), pgstore.ErrNilPool)
	_, err = s.Reap(ctx, 0)
	assert.ErrorIs(t, err, pgstore.ErrNilPool)
}

// TestDatabaseDown checks that a store whose database cannot be reached
// fails every operation promptly with a wrapped error.
func TestDatabaseDown(t *testing.T) {
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5")
	require.NoError(t, err)
	defer pool.Close()
	s, err := pgstore.New(pool, pgstore.Config{})
	require.NoError(t, err)
	_, _, err = s.Reserve(ctx, "\nk", fp(1), time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pgstore: reserve")
	assert.Error(t, s.Complete(ctx, "\nk", 1, okResponse("x"), time.Hour))
	assert.False(t, errors.Is(s.Release(ctx, "\nk", 1), idempotency.ErrLeaseLost), "an outage is no lost lease")
}
