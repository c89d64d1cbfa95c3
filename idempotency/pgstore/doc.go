// Package pgstore keeps idempotency records in PostgreSQL, in the database
// that holds the effects they guard, and can make a request's effects and
// its stored response one transaction.
//
// It lives in its own module so that pgx is a dependency only of programs
// that use it. Give a Store to the middleware and each keyed request runs
// in one transaction, which its handler reaches with Tx:
//
//	pool, _ := pgxpool.New(ctx, "postgres://...")
//	store, _ := pgstore.New(pool, pgstore.Config{})
//	_ = store.Migrate(ctx) // or ship store.SchemaSQL() with your migrations
//	handler := idempotency.Middleware(store, idempotency.MiddlewareConfig{})(mux)
//
//	func createOrder(w http.ResponseWriter, r *http.Request) {
//		tx := pgstore.Tx(r.Context())
//		_, err := tx.Exec(r.Context(), "INSERT INTO orders ...")
//		...
//	}
//
// The key's row, the handler's writes and the response commit together,
// and the response is sent after the commit (see InTx for duplicates,
// faults and retries). Store.Plain is the same table as an ordinary
// idempotency.Store, for handlers run outside a transaction. For effects
// outside the database, see Phase and AtomicPhase.
//
// Records live in one table (Config.Table, in Config.Schema), one row per
// (scope, key); see SchemaSQL for its columns. Expired rows are taken over
// by the next request with their key and deleted by Reap, which a service
// schedules.
//
// # Atomic phases
//
// A handler whose effects are not all in the database (it charges a card
// through a payment API, sends a message) cannot make them one
// transaction. It can still be made safe to run again, by splitting it
// into phases, each of which either leaves a recovery point (its result,
// kept under the request's key) or did nothing:
//
//   - a foreign phase (Phase) calls the other service with a key derived
//     from the request's (idempotency.DerivedKey(ctx, name)), so that the
//     service deduplicates the call, and records what it answered the
//     moment it answered, outside any transaction;
//   - a local phase (AtomicPhase) makes database writes and records its
//     recovery point in the same transaction, so both happen or neither.
//
// A run of the handler for a key whose earlier run got part of the way
// (its response was lost, the server crashed, a later phase failed and
// the handler released its key with idempotency.Release) skips every phase
// that left a recovery point, getting its recorded result instead, and
// goes on from the first that did not. The last phase, the one that
// writes the response, is the request's own transaction in the
// transactional mode:
//
//	func checkout(w http.ResponseWriter, r *http.Request) {
//		ctx := r.Context()
//		charge, err := store.Phase(ctx, "charge", func(ctx context.Context) ([]byte, error) {
//			key, _ := idempotency.DerivedKey(ctx, "charge")
//			return payments.Charge(idempotency.WithKey(ctx, key), order) // through rebound
//		})
//		if err != nil {
//			idempotency.Release(r) // nothing recorded: a retry calls again, with the same key
//			http.Error(w, "payment failed", http.StatusBadGateway)
//			return
//		}
//		// In the request's transaction: commits with the response.
//		_, err = pgstore.Tx(ctx).Exec(ctx, "INSERT INTO orders (charge) VALUES ($1)", charge)
//		...
//	}
//
// Recovery points are rows of the table Config.Table + "_phases", kept
// for Config.PhaseTTL (24 hours by default: set it no shorter than the
// middleware's TTL) and deleted by Reap once expired. A recovery point
// belongs to a key, not to a request: a key reused for another request
// after its record expired finds the first request's results, which is
// also what the downstream service would answer for the derived key.
//
// In the transactional mode, Phase records on connections of a small pool
// of the Store's own (Config.PhaseConns), never on a second connection of
// the request pool while the request's transaction holds one, which could
// leave every connection held by a request waiting for another: close it
// with Store.Close.
package pgstore
