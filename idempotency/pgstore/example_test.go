package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/pgstore"
)

// The transactional mode: the handler's insert and its stored response
// commit together. (Not run: it needs a database.)
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		log.Fatal(err)
	}
	// Close the connections Phase opened, if any.
	defer store.Close()
	if err := store.Migrate(ctx); err != nil { // or ship store.SchemaSQL()
		log.Fatal(err)
	}

	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx := pgstore.Tx(r.Context()) // the request's transaction
		var id int64
		if err := tx.QueryRow(r.Context(), "INSERT INTO orders (item) VALUES ($1) RETURNING id", "book").Scan(&id); err != nil {
			http.Error(w, "could not create the order", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, id)
	})
	mux := http.NewServeMux()
	mux.Handle("POST /orders", createOrder)
	handler := idempotency.Middleware(store, idempotency.MiddlewareConfig{})(mux)

	// Expired records and recovery points are deleted in bounded batches.
	go func() {
		for range time.Tick(5 * time.Minute) {
			if _, err := store.Reap(ctx, 0); err != nil {
				log.Print(err)
			}
		}
	}()
	log.Fatal(http.ListenAndServe(":8080", handler))
}

// A foreign phase: the charge is made with a key derived from the
// request's, and its result is recorded the moment it answers, so a later
// run of the same key (after a rollback, a lost response, a crash) does
// not charge again. (Not run: it needs a database.)
func ExampleStore_Phase() {
	var store *pgstore.Store // from pgstore.New
	charge := func(ctx context.Context, key string) ([]byte, error) {
		// POST to the payment service through rebound, with the key:
		// req = req.WithContext(idempotency.WithKey(ctx, key))
		return []byte("ch_123"), nil
	}
	checkout := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id, err := store.Phase(ctx, "charge", func(ctx context.Context) ([]byte, error) {
			key, _ := idempotency.DerivedKey(ctx, "charge")
			return charge(ctx, key)
		})
		if err != nil {
			idempotency.Release(r) // nothing recorded: a retry charges again, with the same key
			http.Error(w, "payment failed", http.StatusBadGateway)
			return
		}
		if _, err := pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (charge) VALUES ($1)", string(id)); err != nil {
			http.Error(w, "could not record the order", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	_ = idempotency.Middleware(store, idempotency.MiddlewareConfig{})(checkout)
}
