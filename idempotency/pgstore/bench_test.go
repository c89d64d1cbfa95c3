package pgstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
)

// The benchmarks run against the real PostgreSQL server of pgtest, on
// loopback, through the middleware's ServeHTTP without an HTTP server, so
// that they measure the database work. Round trips per request (see
// TestRoundTrips): a transactional first request 4, one more than
// BenchmarkHandlerOwnTx's 3; a replay 1; the plain mode's first request
// 3 (reserve, the handler's own insert, complete) and its replay 1.

// benchShop returns a shop whose pool has one connection, as a request
// sees it.
func benchShop(b *testing.B) *shop {
	return shopIn(b, newSchema(b), pgstore.Config{}, 4)
}

// serve sends one keyed POST to h and fails b unless it got want.
func serve(b *testing.B, h http.Handler, key string, want int) {
	req := httptest.NewRequest(http.MethodPost, "http://shop/orders", strings.NewReader("book"))
	req.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != want {
		b.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
	}
}

// BenchmarkTxFirstRequest: begin with the key's insert, the handler's
// insert, the response's update with the commit, after a read of the key.
func BenchmarkTxFirstRequest(b *testing.B) {
	s := benchShop(b)
	h := idempotency.Middleware(s.store, idempotency.MiddlewareConfig{})(s)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, h, "first-"+strconv.Itoa(i), http.StatusCreated)
	}
}

// BenchmarkTxReplay: one read of the key.
func BenchmarkTxReplay(b *testing.B) {
	s := benchShop(b)
	h := idempotency.Middleware(s.store, idempotency.MiddlewareConfig{})(s)
	serve(b, h, "replay", http.StatusCreated)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "replay", http.StatusCreated)
	}
}

// BenchmarkHandlerOwnTx is the baseline: the handler's insert in a
// transaction of its own (BEGIN, INSERT, COMMIT), with no key.
func BenchmarkHandlerOwnTx(b *testing.B) {
	s := benchShop(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var id int64
		if err := tx.QueryRow(ctx, "INSERT INTO orders (item) VALUES ($1) RETURNING id", "book").Scan(&id); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// plainShop is a handler that inserts outside any transaction, for the
// plain mode.
func plainShop(s *shop) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id int64
		if err := s.pool.QueryRow(r.Context(), "INSERT INTO orders (item) VALUES ($1) RETURNING id", "book").Scan(&id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// BenchmarkPlainFirstRequest: reserve (committed), the handler's insert,
// complete.
func BenchmarkPlainFirstRequest(b *testing.B) {
	s := benchShop(b)
	h := idempotency.Middleware(s.store.Plain(), idempotency.MiddlewareConfig{})(plainShop(s))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, h, "first-"+strconv.Itoa(i), http.StatusCreated)
	}
}

// BenchmarkPlainReplay: one reserve that finds the response.
func BenchmarkPlainReplay(b *testing.B) {
	s := benchShop(b)
	h := idempotency.Middleware(s.store.Plain(), idempotency.MiddlewareConfig{})(plainShop(s))
	serve(b, h, "replay", http.StatusCreated)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "replay", http.StatusCreated)
	}
}
