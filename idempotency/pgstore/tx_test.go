package pgstore_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTxReplay(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	first := post(c, srv.URL, "k1", "book")
	require.NoError(t, first.err)
	assert.Equal(t, http.StatusCreated, first.status)
	assert.Equal(t, `{"id":1}`, first.body)
	assert.Empty(t, first.header.Get(idempotency.HeaderReplayed))

	again := post(c, srv.URL, "k1", "book")
	require.NoError(t, again.err)
	assert.Equal(t, http.StatusCreated, again.status)
	assert.Equal(t, first.body, again.body)
	assert.Equal(t, "application/json", again.header.Get("Content-Type"))
	assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))

	other := post(c, srv.URL, "k1", "pen")
	require.NoError(t, other.err)
	assert.Equal(t, http.StatusUnprocessableEntity, other.status, "a key reused for another request")

	assert.Equal(t, 1, s.orders(t))
	assert.EqualValues(t, 1, s.runs.Load())
	assert.Equal(t, 1, s.keys(t))

	rec, found, err := s.store.Lookup(ctx, storeKeyOf(t, s, "k1"))
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, http.StatusCreated, rec.Response.Status)
	assert.False(t, rec.Response.OutcomeUnknown)
}

// storeKeyOf returns the store key of the only row with client key key.
func storeKeyOf(t *testing.T, s *shop, key string) string {
	t.Helper()
	var scope []byte
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT scope FROM rebound_idempotency WHERE key = $1", key).Scan(&scope))
	return string(scope) + key
}

// TestTxConcurrentDuplicates sends 50 requests with one key at once while
// the first holds its transaction open: the others wait for its commit
// and replay it. One order, one handler run.
func TestTxConcurrentDuplicates(t *testing.T) {
	s := shopIn(t, newSchema(t), pgstore.Config{Wait: time.Minute}, 60)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.after = func(http.ResponseWriter, *http.Request, *pgstore.Txn, int64) {
		once.Do(func() { close(entered) })
		<-release
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	const n = 50
	replies := make([]reply, n)
	var wg sync.WaitGroup
	wg.Go(func() { replies[0] = post(c, srv.URL, "dup", "book") })
	<-entered
	for i := 1; i < n; i++ {
		wg.Go(func() { replies[i] = post(c, srv.URL, "dup", "book") })
	}
	waitForLockWaiters(t, s, n-1)
	close(release)
	wg.Wait()

	replayed := 0
	for i, r := range replies {
		require.NoError(t, r.err, "reply %d", i)
		assert.Equal(t, http.StatusCreated, r.status, "reply %d: %s", i, r.body)
		assert.Equal(t, `{"id":1}`, r.body, "reply %d", i)
		if r.header.Get(idempotency.HeaderReplayed) == "true" {
			replayed++
		}
	}
	assert.Equal(t, n-1, replayed)
	assert.Equal(t, 1, s.orders(t), "one effect")
	assert.EqualValues(t, 1, s.runs.Load())
}

// TestTxDuplicateNoWait: with a negative Wait a duplicate is answered 409
// at once while the first runs, and replays once it committed.
func TestTxDuplicateNoWait(t *testing.T) {
	s := newShop(t, pgstore.Config{Wait: -1})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.after = func(http.ResponseWriter, *http.Request, *pgstore.Txn, int64) {
		once.Do(func() { close(entered) })
		<-release
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	var first reply
	done := make(chan struct{})
	go func() { defer close(done); first = post(c, srv.URL, "k", "book") }()
	<-entered
	for range 5 {
		r := post(c, srv.URL, "k", "book")
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusConflict, r.status, r.body)
		assert.NotEmpty(t, r.header.Get("Retry-After"))
	}
	close(release)
	<-done
	require.NoError(t, first.err)
	assert.Equal(t, http.StatusCreated, first.status)
	r := post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	assert.Equal(t, 1, s.orders(t))
}

// TestTxWaitEnds: a duplicate waits Wait for the first, then gets 409.
func TestTxWaitEnds(t *testing.T) {
	s := newShop(t, pgstore.Config{Wait: 50 * time.Millisecond})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.after = func(http.ResponseWriter, *http.Request, *pgstore.Txn, int64) {
		once.Do(func() { close(entered) })
		<-release
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	done := make(chan reply)
	go func() { done <- post(c, srv.URL, "k", "book") }()
	<-entered
	r := post(c, srv.URL, "k", "book")
	assert.Equal(t, http.StatusConflict, r.status, r.body)
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	close(release)
	assert.Equal(t, http.StatusCreated, (<-done).status)
	assert.Equal(t, 1, s.orders(t))
}

// TestTxPanicRollsBack: a handler that inserts its order and then panics
// leaves no order and no key; the retry creates exactly one.
func TestTxPanicRollsBack(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	var panicked sync.Once
	s.after = func(http.ResponseWriter, *http.Request, *pgstore.Txn, int64) {
		panicked.Do(func() { panic(http.ErrAbortHandler) }) // the first run only
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	r := post(c, srv.URL, "k", "book")
	require.Error(t, r.err, "the panic aborts the response")
	assert.Equal(t, 0, s.orders(t), "the insert was rolled back")
	assert.Equal(t, 0, s.keys(t), "and so was the key")

	r = post(c, srv.URL, "k", "book")
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Empty(t, r.header.Get(idempotency.HeaderReplayed), "the retry ran afresh")
	assert.Equal(t, 1, s.orders(t))
	assert.EqualValues(t, 2, s.runs.Load())
}

// TestTxBackendKilled kills the request's database backend from a second
// connection between the handler's insert and the commit: the request is
// answered 503 with Retry-After, nothing is left, and the retry runs once.
func TestTxBackendKilled(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	var killed sync.Once
	s.after = func(_ http.ResponseWriter, r *http.Request, tx *pgstore.Txn, _ int64) {
		killed.Do(func() {
			var pid int
			require.NoError(t, tx.QueryRow(r.Context(), "SELECT pg_backend_pid()").Scan(&pid))
			var ok bool
			require.NoError(t, s.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1, 10000)", pid).Scan(&ok))
			require.True(t, ok)
		})
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)

	r := post(c, srv.URL, "k", "book")
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	assert.Equal(t, "1", r.header.Get("Retry-After"))
	assert.Equal(t, 0, s.orders(t), "the insert died with its backend")
	assert.Equal(t, 0, s.keys(t))

	r = post(c, srv.URL, "k", "book")
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusCreated, r.status, r.body)
	assert.Empty(t, r.header.Get(idempotency.HeaderReplayed))
	assert.Equal(t, 1, s.orders(t))
	r = post(c, srv.URL, "k", "book")
	assert.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	assert.Equal(t, 1, s.orders(t))
}

// TestTxTwoServers runs two middleware instances, each with a pool of its
// own, on one database, and sends each key to both at once: one effect
// per key, and every answer for a key is the same.
func TestTxTwoServers(t *testing.T) {
	schema := newSchema(t)
	a := shopIn(t, schema, pgstore.Config{}, 8)
	b := shopIn(t, schema, pgstore.Config{}, 8)
	// The default scope digests the Host, which differs between the two
	// test servers; behind one load balancer it would not.
	cfg := idempotency.MiddlewareConfig{Scope: func(*http.Request) string { return "tenant-1" }}
	srvA, srvB := a.server(t, cfg), b.server(t, cfg)
	c := plainClient(t)

	const keys, perServer = 20, 3
	replies := make([][]reply, keys)
	var wg sync.WaitGroup
	for k := range keys {
		replies[k] = make([]reply, 2*perServer)
		for i := range 2 * perServer {
			url := srvA.URL
			if i%2 == 1 {
				url = srvB.URL
			}
			wg.Go(func() { replies[k][i] = post(c, url, fmt.Sprint("key-", k), fmt.Sprint("item-", k)) })
		}
	}
	wg.Wait()
	for k, rs := range replies {
		for _, r := range rs {
			require.NoError(t, r.err)
			assert.Equal(t, http.StatusCreated, r.status, "key %d: %s", k, r.body)
			assert.Equal(t, rs[0].body, r.body, "key %d: every answer is the first's", k)
		}
	}
	assert.Equal(t, keys, a.orders(t), "one order per key")
	assert.EqualValues(t, keys, a.runs.Load()+b.runs.Load(), "one run per key")
	var items int
	require.NoError(t, a.pool.QueryRow(ctx, "SELECT count(DISTINCT item) FROM orders").Scan(&items))
	assert.Equal(t, keys, items)
}

// TestTxDatabaseDown: with the database unreachable the request is
// answered 503 with Retry-After and the handler does not run.
func TestTxDatabaseDown(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	down, err := pgstore.New(deadPool(t), pgstore.Config{})
	require.NoError(t, err)
	srv := httptestServer(t, idempotency.Middleware(down, idempotency.MiddlewareConfig{})(s))
	r := post(plainClient(t), srv.URL, "k", "book")
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "1", r.header.Get("Retry-After"))
	assert.Contains(t, r.body, idempotency.ProblemUnavailable)
	assert.Zero(t, s.runs.Load(), "the handler did not run")
}

// TestTxSerializationRetry makes two SERIALIZABLE requests read and then
// update one counter at the same time: one of them fails with a
// serialization failure and is run again inside the middleware, so both
// succeed and the counter counts both.
func TestTxSerializationRetry(t *testing.T) {
	s := newShop(t, pgstore.Config{IsoLevel: "serializable"})
	_, err := s.pool.Exec(ctx, `CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0)`)
	require.NoError(t, err)
	var barrier sync.WaitGroup
	barrier.Add(2)
	var first sync.Map // key -> struct{}: the first run of each key meets the barrier
	s.after = func(_ http.ResponseWriter, r *http.Request, tx *pgstore.Txn, _ int64) {
		var n int
		require.NoError(t, tx.QueryRow(r.Context(), "SELECT n FROM counter").Scan(&n))
		if _, seen := first.LoadOrStore(r.Header.Get("Idempotency-Key"), struct{}{}); !seen {
			barrier.Done()
			barrier.Wait() // both have read
		}
		// The second writer fails here (40001); the handler goes on as a
		// careless one would, and its 201 is never sent.
		_, _ = tx.Exec(r.Context(), "UPDATE counter SET n = $1", n+1)
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	var wg sync.WaitGroup
	replies := make([]reply, 2)
	for i := range 2 {
		wg.Go(func() { replies[i] = post(c, srv.URL, fmt.Sprint("k", i), "book") })
	}
	wg.Wait()
	for i, r := range replies {
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusCreated, r.status, "reply %d: %s", i, r.body)
	}
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT n FROM counter").Scan(&n))
	assert.Equal(t, 2, n)
	assert.Equal(t, 2, s.orders(t))
	assert.EqualValues(t, 3, s.runs.Load(), "one of the two ran again")
}

func newSchema(t testing.TB) string { return pgtest.NewSchema(t) }

// deadPool returns a pool of a database that is not there: nothing
// listens on port 1.
func deadPool(t testing.TB) *pgxpool.Pool {
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// httptestServer serves h on 127.0.0.1 until t ends.
func httptestServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// waitForLockWaiters waits until n backends of s's schema wait for a lock
// (the duplicates queued behind the first request's key), polling the
// database's own view for at most 30 s.
func waitForLockWaiters(t testing.TB, s *shop, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting))
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d duplicates wait for the first's lock after 30 s", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTxDerivedKey: the handler's derived key for a downstream call is
// the same in the run whose transaction rolled back and in the retry.
func TestTxDerivedKey(t *testing.T) {
	s := newShop(t, pgstore.Config{})
	var keys []string
	s.after = func(_ http.ResponseWriter, r *http.Request, _ *pgstore.Txn, _ int64) {
		k, ok := idempotency.DerivedKey(r.Context(), "charge")
		require.True(t, ok)
		keys = append(keys, k)
		if len(keys) == 1 {
			panic(http.ErrAbortHandler)
		}
	}
	srv := s.server(t, idempotency.MiddlewareConfig{})
	c := plainClient(t)
	require.Error(t, post(c, srv.URL, "k", "book").err)
	assert.Equal(t, http.StatusCreated, post(c, srv.URL, "k", "book").status)
	require.Len(t, keys, 2)
	assert.Equal(t, keys[0], keys[1])
}
