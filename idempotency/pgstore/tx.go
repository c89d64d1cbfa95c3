package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
)

// Defaults of Config's transactional settings.
const (
	DefaultWait        = 5 * time.Second
	DefaultMaxAttempts = 3
)

// abandonedTTL is how long a key stays used when a handler ended the
// request's transaction itself (see Txn): its row was committed in the
// state Reserve gave it, OutcomeUnknown.
const abandonedTTL = 24 * time.Hour

// Errors of the transactional mode. They match with errors.Is.
var (
	// ErrNoTx is returned by the methods of a nil *Txn: Tx found no
	// transaction in the context (the request did not go through the
	// middleware with a Store, or had no key).
	ErrNoTx = errors.New("pgstore: no transaction in the context")
	// ErrTxDone is returned by a Txn used after its request's transaction
	// ended.
	ErrTxDone = errors.New("pgstore: transaction already ended")
	// ErrTxAborted: a statement of the handler failed, which aborts a
	// PostgreSQL transaction, so nothing could be committed. The error
	// also wraps the statement's own error when the handler ran it
	// through its Txn.
	ErrTxAborted = errors.New("pgstore: the transaction was aborted by a failed statement; nothing was committed")
	// ErrTxEnded: the handler ended the transaction itself (COMMIT or
	// ROLLBACK through Exec). Whatever it committed stays, and its key is
	// kept as OutcomeUnknown.
	ErrTxEnded = errors.New("pgstore: the handler ended the transaction itself")
	// ErrReleasedInTx: the handler released its key (idempotency.Release)
	// inside the transaction, so everything was rolled back.
	ErrReleasedInTx = errors.New("pgstore: key released inside the transaction; rolled back")
)

// Txn is the transaction of one request, for its handler: find it with Tx
// and send the handler's statements to it, so they commit with the stored
// response or not at all.
//
//	func createOrder(w http.ResponseWriter, r *http.Request) {
//		tx := pgstore.Tx(r.Context())
//		var id int64
//		err := tx.QueryRow(r.Context(), "INSERT INTO orders (item) VALUES ($1) RETURNING id", "book").Scan(&id)
//		if err != nil { ... }
//		w.WriteHeader(http.StatusCreated)
//	}
//
// Its methods are those of pgx.Tx that a handler needs (it satisfies
// sqlc's DBTX). The middleware commits; the handler must not end the
// transaction itself (COMMIT or ROLLBACK through Exec: see ErrTxEnded).
// A failed statement aborts a PostgreSQL transaction: the request then
// commits nothing and is answered 503, so a handler that wants to answer a
// failed statement (a unique violation, say, as 409) runs it under a
// savepoint of its own (SAVEPOINT, then ROLLBACK TO SAVEPOINT) or avoids
// the error (ON CONFLICT). A Txn, like pgx.Tx, is not safe for concurrent
// use. The nil *Txn is valid: every method returns ErrNoTx.
type Txn struct {
	s     *Store
	conn  *pgxpool.Conn // nil until first needed
	begun bool          // BEGIN was sent
	done  bool          // the transaction ended; the Txn is dead

	failure  error      // first database error a handler's statement met
	reserved []txKey    // reservations this transaction made
	pending  []complete // their Completes, written with the COMMIT
	release  bool       // a reservation was released: roll back
}

// txKey is a reservation a transaction made.
type txKey struct {
	scope []byte
	key   string
	token int64
}

// complete is a Complete deferred to the commit.
type complete struct {
	txKey
	c   responseColumns
	ttl time.Duration
}

// txCtxKey is the context key of the running Txn.
type txCtxKey struct{}

// Tx returns the transaction of the request whose context is ctx, or nil
// (whose methods return ErrNoTx) outside one.
func Tx(ctx context.Context) *Txn {
	t, _ := ctx.Value(txCtxKey{}).(*Txn)
	return t
}

// txOf returns the running transaction of s in ctx, or nil.
func (s *Store) txOf(ctx context.Context) *Txn {
	if t := Tx(ctx); t != nil && t.s == s && !t.done {
		return t
	}
	return nil
}

var _ idempotency.TxStore = (*Store)(nil)

// InTx implements idempotency.TxStore: it runs fn in a transaction, whose
// Txn fn's context carries (see Tx), and commits when fn returns nil.
//
// The transaction costs round trips only where it must. BEGIN is sent with
// the first statement (Reserve's insert), and the Complete of a key this
// transaction reserved is sent with the COMMIT, so a request the middleware
// runs takes three round trips besides the handler's own statements: a
// read of the key (outside the transaction: a replay ends there, in one
// round trip), BEGIN with the insert of the key, and, after the handler's
// statements, the response's update with COMMIT. A handler that makes one
// insert costs four, one more than that insert in a transaction of its
// own (BEGIN, INSERT, COMMIT).
//
// A key that a concurrent transaction is inserting makes Reserve wait,
// for at most Config.Wait, for that transaction to end: then it sees the
// committed response (a replay), or the key is free again (rolled back)
// and reserves it. After Wait it reports the key in flight (409).
//
// When the transaction fails on a serialization failure or a deadlock
// (SQLSTATE 40001, 40P01), in the handler's statements or at the commit,
// InTx rolls back and calls fn again with a new transaction, up to
// Config.MaxAttempts calls in all: the response was not sent, so no one
// sees the failed attempts. Any other failure rolls back and is returned:
// the middleware answers 503 and the client's retry finds a clean slate,
// which is also what happens when the database connection dies before the
// commit (a connection lost during the COMMIT leaves the outcome to the
// database: the retry then finds the response or runs afresh).
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.pool == nil {
		return ErrNilPool
	}
	for attempt := 1; ; attempt++ {
		t := &Txn{s: s}
		err := t.run(ctx, fn)
		if err == nil || attempt >= s.maxAttempts || !retryable(err) {
			return err
		}
	}
}

// run is one attempt of InTx.
func (t *Txn) run(ctx context.Context, fn func(ctx context.Context) error) error {
	defer t.close()
	ok := false
	defer func() {
		if !ok { // fn panicked; the panic continues
			t.rollback(ctx)
		}
	}()
	err := fn(context.WithValue(ctx, txCtxKey{}, t))
	ok = true
	switch {
	case err != nil:
		t.rollback(ctx)
		return err
	case t.release:
		t.rollback(ctx)
		return ErrReleasedInTx
	}
	return t.commit(ctx)
}

// retryable reports whether err is a serialization failure or a deadlock,
// after which the same transaction may well succeed.
func retryable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// ours returns the bound context for the store's own statements: they run
// even when the client has gone, but not for ever.
func (t *Txn) ours(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), t.s.timeout)
}

// close ends the Txn and returns its connection to the pool (which closes
// a connection still in a transaction).
func (t *Txn) close() {
	t.done = true
	if t.conn != nil {
		t.conn.Release()
		t.conn = nil
	}
}

// rollback rolls the transaction back, if it began and is still open.
func (t *Txn) rollback(ctx context.Context) {
	t.done = true
	if t.conn == nil || !t.begun || t.conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := t.ours(ctx)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		// The pool closes a connection left in a transaction.
		return
	}
}

// commit writes the deferred Completes and commits, in one round trip.
func (t *Txn) commit(ctx context.Context) error {
	t.done = true
	if t.conn == nil || !t.begun {
		return nil // nothing was done
	}
	switch t.conn.Conn().PgConn().TxStatus() {
	case 'I':
		return ErrTxEnded
	case 'E':
		t.rollback(ctx)
		if t.failure != nil {
			return fmt.Errorf("%w: %w", ErrTxAborted, t.failure)
		}
		return ErrTxAborted
	}
	ctx, cancel := t.ours(ctx)
	defer cancel()
	b := &pgx.Batch{}
	for _, p := range t.pending {
		b.Queue(t.s.sql.completeTx, p.scope, p.key, p.token,
			p.c.status, p.c.notReplayable, p.c.unknown, p.c.header, p.c.body, max(p.ttl, 0).Microseconds())
	}
	b.Queue("COMMIT")
	br := t.conn.SendBatch(ctx, b)
	for range t.pending {
		if _, err := br.Exec(); err != nil {
			br.Close()
			var pg *pgconn.PgError
			if errors.As(err, &pg) && pg.Code == "22012" { // the guard's division by zero
				return fmt.Errorf("pgstore: commit: %w: the reservation was not found in its transaction", idempotency.ErrLeaseLost)
			}
			return fmt.Errorf("pgstore: commit: %w", err)
		}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("pgstore: commit: %w", pgx.ErrTxCommitRollback)
	}
	return nil
}

// acquire makes sure the Txn has a connection.
func (t *Txn) acquire(ctx context.Context) error {
	if t.done {
		return ErrTxDone
	}
	if t.conn != nil {
		return nil
	}
	c, err := t.s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	t.conn = c
	return nil
}

// ready makes sure the Txn has a connection in the transaction, sending
// BEGIN if nothing has yet.
func (t *Txn) ready(ctx context.Context) error {
	if err := t.acquire(ctx); err != nil {
		return err
	}
	if t.begun {
		return nil
	}
	if _, err := t.conn.Exec(ctx, t.s.begin); err != nil {
		return err
	}
	t.begun = true
	return nil
}

// note keeps the first database error a handler's statement met, so that
// an aborted transaction can say why and a serialization failure can be
// retried.
func (t *Txn) note(err error) error {
	var pg *pgconn.PgError
	if t.failure == nil && errors.As(err, &pg) {
		t.failure = err
	}
	return err
}

// reservedBy returns the reservation of (scope, key) this transaction made
// with token, or nil.
func (t *Txn) reservedBy(scope []byte, key string, token uint64) *txKey {
	for i := range t.reserved {
		r := &t.reserved[i]
		if r.key == key && string(r.scope) == string(scope) && uint64(r.token) == token {
			return r
		}
	}
	return nil
}

// setLockTimeout sets lock_timeout to $1 for the key's insert, keeping
// the value it had in a setting of its own; restoreLockTimeout puts it
// back for the handler. Both last until the transaction ends (the third
// argument of set_config). The subquery runs first: the outer
// set_config's row needs it, and volatile functions are not optimised
// away.
const (
	setLockTimeout = `SELECT set_config('lock_timeout', $1, true)
		FROM (SELECT set_config('rebound.lock_timeout', current_setting('lock_timeout'), true)) saved`
	restoreLockTimeout = `SELECT set_config('lock_timeout', current_setting('rebound.lock_timeout'), true)`
)

// lockTimeout returns Config.Wait as a lock_timeout setting.
func lockTimeout(wait time.Duration) string {
	if wait < 0 {
		return "1ms" // 0 would mean no limit
	}
	return strconv.FormatInt(max(wait.Milliseconds(), 1), 10) + "ms"
}

// reserveTx is Reserve inside t. A key with a live row is answered from a
// read outside the transaction, so a replay never begins one. Otherwise
// one round trip begins the transaction (if this is its first statement)
// and inserts the key's row under a lock_timeout of Config.Wait; when the
// insert found a live row after all (committed meanwhile), a second reads
// it. The row is inserted as an
// OutcomeUnknown response that the deferred Complete replaces, so a
// handler that commits the transaction itself leaves a used key behind,
// never a free one.
func (s *Store) reserveTx(ctx context.Context, t *Txn, scope []byte, key string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	for attempt := 1; ; attempt++ {
		now := time.Now()
		if !t.begun {
			rec, found, err := scanRecord(s.pool.QueryRow(ctx, s.sql.live, scope, key), now)
			if err != nil {
				return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
			}
			if found {
				return rec, false, nil
			}
		}
		if err := t.acquire(ctx); err != nil {
			return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
		}
		fresh := !t.begun
		b := &pgx.Batch{}
		if fresh {
			b.Queue(s.begin)
		}
		b.Queue(setLockTimeout, s.lockTimeout)
		b.Queue(s.sql.reserve, scope, key, fp[:], int16(500), true, abandonedTTL.Microseconds())
		b.Queue(restoreLockTimeout)
		br := t.conn.SendBatch(ctx, b)
		t.begun = true
		var token int64
		err := func() error {
			for range b.Len() - 2 { // BEGIN and setLockTimeout
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			if err := br.QueryRow().Scan(&token); err != nil {
				return err
			}
			return br.Close()
		}()
		switch {
		case err == nil:
			t.reserved = append(t.reserved, txKey{scope: scope, key: key, token: token})
			return idempotency.Record{Fingerprint: fp, Token: uint64(token), Expires: now.Add(lease)}, true, nil
		case errors.Is(err, pgx.ErrNoRows):
			// A live row stopped the insert (one committed while it waited,
			// which this statement's new snapshot sees): read it, in a
			// round trip of its own on this rare path.
			if err := br.Close(); err != nil {
				return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
			}
			rec, found, err := scanRecord(t.conn.QueryRow(ctx, s.sql.live, scope, key), now)
			switch {
			case err != nil:
				return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
			case !found:
				return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", errVanished)
			}
			return rec, false, nil
		}
		br.Close()
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "55P03" {
			// lock_timeout: a concurrent request holds the key longer than
			// Wait. Its fingerprint is not visible yet; the record says
			// in flight, with this request's own.
			return idempotency.Record{Fingerprint: fp, Token: 1, Expires: now.Add(lease)}, false, nil
		}
		if fresh && retryable(err) && attempt < s.maxAttempts {
			// Under REPEATABLE READ or SERIALIZABLE, a row committed after
			// the snapshot fails the insert. Nothing else ran in this
			// transaction: start it again.
			t.rollback(ctx)
			t.done, t.begun = false, false
			continue
		}
		return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
	}
}

// completeTx is Complete inside t: a key t reserved is completed with the
// COMMIT; any other in t's connection, at once.
func (s *Store) completeTx(ctx context.Context, t *Txn, scope []byte, key string, token uint64, c responseColumns, ttl time.Duration) error {
	if r := t.reservedBy(scope, key, token); r != nil {
		for _, p := range t.pending {
			if p.txKey.token == r.token {
				return idempotency.ErrLeaseLost // completed already
			}
		}
		t.pending = append(t.pending, complete{txKey: *r, c: c, ttl: ttl})
		return nil
	}
	if err := t.ready(ctx); err != nil {
		return fmt.Errorf("pgstore: complete: %w", err)
	}
	return s.completeIn(ctx, t.conn, scope, key, token, c, ttl)
}

// queryer is what the store's statements run on: the pool, or the
// connection of a transaction.
type queryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Exec runs sql in the transaction. See pgx.Tx.
func (t *Txn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t == nil {
		return pgconn.CommandTag{}, ErrNoTx
	}
	if err := t.ready(ctx); err != nil {
		return pgconn.CommandTag{}, t.note(err)
	}
	tag, err := t.conn.Exec(ctx, sql, args...)
	return tag, t.note(err)
}

// Query runs sql in the transaction. See pgx.Tx. An error met while
// reading the rows is kept like one from Query itself.
func (t *Txn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t == nil {
		return nil, ErrNoTx
	}
	if err := t.ready(ctx); err != nil {
		return nil, t.note(err)
	}
	rows, err := t.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, t.note(err)
	}
	return &txRows{Rows: rows, t: t}, nil
}

// QueryRow runs sql in the transaction. See pgx.Tx.
func (t *Txn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t == nil {
		return errRow{ErrNoTx}
	}
	if err := t.ready(ctx); err != nil {
		return errRow{t.note(err)}
	}
	return txRow{row: t.conn.QueryRow(ctx, sql, args...), t: t}
}

// SendBatch sends b in the transaction. See pgx.Tx.
func (t *Txn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t == nil {
		return errBatch{ErrNoTx}
	}
	if err := t.ready(ctx); err != nil {
		return errBatch{t.note(err)}
	}
	return &txBatch{BatchResults: t.conn.SendBatch(ctx, b), t: t}
}

// CopyFrom copies rows into a table in the transaction. See pgx.Tx.
func (t *Txn) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if t == nil {
		return 0, ErrNoTx
	}
	if err := t.ready(ctx); err != nil {
		return 0, t.note(err)
	}
	n, err := t.conn.CopyFrom(ctx, table, columns, src)
	return n, t.note(err)
}

// txRows notes the error that ends a row set.
type txRows struct {
	pgx.Rows
	t *Txn
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.t.note(r.Rows.Err())
	return false
}

func (r *txRows) Err() error { return r.t.note(r.Rows.Err()) }

func (r *txRows) Close() {
	r.Rows.Close()
	r.t.note(r.Rows.Err())
}

// txRow notes the error of a single row.
type txRow struct {
	row pgx.Row
	t   *Txn
}

func (r txRow) Scan(dest ...any) error { return r.t.note(r.row.Scan(dest...)) }

// errRow is a row that fails with its error.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// txBatch notes the errors of a batch's results.
type txBatch struct {
	pgx.BatchResults
	t *Txn
}

func (b *txBatch) Exec() (pgconn.CommandTag, error) {
	tag, err := b.BatchResults.Exec()
	return tag, b.t.note(err)
}

func (b *txBatch) Query() (pgx.Rows, error) {
	rows, err := b.BatchResults.Query()
	if err != nil {
		return rows, b.t.note(err)
	}
	return &txRows{Rows: rows, t: b.t}, nil
}

func (b *txBatch) QueryRow() pgx.Row { return txRow{row: b.BatchResults.QueryRow(), t: b.t} }

func (b *txBatch) Close() error { return b.t.note(b.BatchResults.Close()) }

// errBatch is a batch that fails with its error.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
