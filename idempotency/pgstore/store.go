package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rebound-http/rebound/idempotency"
)

// Defaults of Config.
const (
	DefaultTable            = "rebound_idempotency"
	DefaultMaxResponseBytes = 4 << 20
	DefaultTimeout          = 5 * time.Second
	DefaultPhaseTTL         = 24 * time.Hour
)

// Errors of the store. They match with errors.Is.
var (
	// ErrNilPool is returned by every operation of a Store made with a
	// nil pool.
	ErrNilPool = errors.New("pgstore: nil pool")
	// ErrConfig is returned by New for a Config it cannot use.
	ErrConfig = errors.New("pgstore: invalid config")
	// ErrInvalidStatus is returned by Complete for a response whose status
	// is not a three-digit HTTP status, which could not be replayed.
	ErrInvalidStatus = errors.New("pgstore: invalid response status")
	// ErrInvalidKey is returned for a key whose part after the scope is not
	// valid UTF-8 or holds a NUL byte, which a text column cannot hold.
	// The middleware's keys are printable ASCII and never are.
	ErrInvalidKey = errors.New("pgstore: key is not valid UTF-8 text")
)

// Config configures a Store. The zero value is the documented default of
// every field.
type Config struct {
	// Schema is the schema of the table. Empty means none: the table name
	// is resolved through the connection's search_path.
	Schema string

	// Table is the table's name, at most 51 bytes (its expiry index is
	// named Table+"_expires_idx"). Empty means "rebound_idempotency".
	Table string

	// MaxResponseBytes bounds the stored size of a response (headers and
	// body). A larger response is stored as NotReplayable, without its
	// headers and body, which keeps its key used: a repeat gets 410 Gone
	// rather than a second run. Zero or negative means 4 MiB; the
	// middleware's own MaxResponseBytes (1 MiB by default) usually applies
	// first.
	MaxResponseBytes int

	// Timeout bounds each operation of the Store interface, on top of its
	// context: the middleware completes and releases keys with a context
	// that a departed client does not cancel. Zero or negative means 5
	// seconds.
	Timeout time.Duration

	// Wait bounds how long a request in a transaction (see InTx) waits for
	// a concurrent one with the same key to commit or roll back before it
	// is answered 409; meanwhile it holds a pool connection. Zero means 5
	// seconds; negative means not to wait (409 at once, after at most a
	// millisecond: PostgreSQL's lock_timeout).
	Wait time.Duration

	// IsoLevel is the isolation level of the transactions InTx begins.
	// Empty means the database's default (READ COMMITTED unless changed).
	IsoLevel pgx.TxIsoLevel

	// PhaseTTL is how long the recovery points of atomic phases (Phase,
	// AtomicPhase) are kept. Set it no shorter than the middleware's TTL.
	// Zero or negative means 24 hours.
	PhaseTTL time.Duration

	// MaxAttempts bounds the calls InTx makes of its function when the
	// transaction fails on a serialization failure or deadlock, the first
	// included. Zero or negative means 3.
	MaxAttempts int

	// PhaseConns is the most connections Phase uses at once in the
	// transactional mode, to record a foreign phase's result outside the
	// request's transaction (which holds one of the pool's connections):
	// they come from a pool of the Store's own, made from the pool's
	// configuration when Phase first needs it, closed by Store.Close. Each
	// is held for one statement, so a few serve many requests. Zero or
	// negative means 2.
	PhaseConns int32
}

// DefaultPhaseConns is Config.PhaseConns's default.
const DefaultPhaseConns = 2

// Store is an idempotency.TxStore in a PostgreSQL table. It is safe for
// concurrent use, and any number of processes may share one table: every
// operation is a single statement (Reserve, a pipelined pair), atomic in
// the database, and the database's clock decides expiry, so servers with
// skewed clocks agree. With the context of an InTx function, the
// operations work inside that transaction (see InTx); otherwise:
//
// Reserve inserts the key's row, or takes over an expired one, with INSERT
// ... ON CONFLICT; when the key is live it returns the existing row,
// read in the same round trip. Complete and Release update or delete the
// row only if it is still in flight with the caller's token and its lease
// has not ended, and return idempotency.ErrLeaseLost otherwise. Record's
// Expires is this process's clock plus the time the database says is
// left.
//
// Tokens come from a sequence of the table's own (Config.Table +
// "_token_seq"), so they are fencing tokens: no two reservations, of any
// key, ever share one, and a later reservation has a larger token.
//
// Errors from the database are returned wrapped, with the operation's
// name; the middleware answers 503 when Reserve fails. The store never
// evicts a live row: the table grows with the keys of one TTL, and Reap
// deletes the expired ones.
//
// Create one with New, and Close it when done if it used Phase in the
// transactional mode; the zero value is not usable.
type Store struct {
	pool        *pgxpool.Pool
	names       names
	maxResponse int
	timeout     time.Duration
	phaseTTL    time.Duration
	wait        time.Duration
	lockTimeout string // Config.Wait, as a lock_timeout setting
	maxAttempts int
	begin       string // BEGIN, with Config.IsoLevel
	sql         statements
	phaseConns  int32

	phaseMu sync.Mutex
	phases  *pgxpool.Pool // Phase's own pool, once made; guarded by phaseMu
	closed  bool          // Close was called; guarded by phaseMu
}

var _ idempotency.Store = (*Store)(nil)

// New returns a Store that keeps its records in pool's database. The
// caller owns pool and closes it; New does not touch the database (see
// Migrate). It returns an error matching ErrConfig for a table or schema
// name it cannot use. A nil pool gives a Store whose every operation
// returns ErrNilPool.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.PhaseTTL <= 0 {
		cfg.PhaseTTL = DefaultPhaseTTL
	}
	if cfg.PhaseConns <= 0 {
		cfg.PhaseConns = DefaultPhaseConns
	}
	switch cfg.IsoLevel {
	case "", pgx.Serializable, pgx.RepeatableRead, pgx.ReadCommitted, pgx.ReadUncommitted:
	default:
		return nil, fmt.Errorf("%w: isolation level %q", ErrConfig, cfg.IsoLevel)
	}
	n, err := newNames(cfg.Schema, cfg.Table)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, names: n, maxResponse: cfg.MaxResponseBytes, timeout: cfg.Timeout,
		phaseTTL: cfg.PhaseTTL, wait: max(cfg.Wait, 0), lockTimeout: lockTimeout(cfg.Wait), maxAttempts: cfg.MaxAttempts, begin: "BEGIN",
		phaseConns: cfg.PhaseConns}
	if cfg.IsoLevel != "" {
		s.begin = "BEGIN ISOLATION LEVEL " + string(cfg.IsoLevel)
	}
	s.sql = newStatements(n)
	return s, nil
}

// statements are the SQL of a store's operations, made once by New.
type statements struct {
	// reserve inserts a row, or takes over an expired one, and returns
	// its new token; no row when the key is live. $1 scope, $2 key, $3
	// fingerprint, $4 status (NULL in flight), $5 outcome unknown, $6
	// microseconds to expiry.
	reserve string
	// live reads the live row of ($1, $2): the columns of scanRecord.
	live string
	// renew, complete and release act on the in-flight row of ($1, $2)
	// with token $3 whose lease has not ended.
	renew, complete, release string
	// completeTx completes the row of ($1, $2) with token $3 that the
	// transaction reserved (the parameters of complete); it fails
	// (division by zero) when there is no such row, so that the COMMIT
	// after it rolls back.
	completeTx string
	// reap and reapPhases delete at most $1 expired rows of the table and
	// of the recovery points, skipping rows another transaction holds.
	reap, reapPhases string
	// phaseGet reads the result of phase $3 of ($1, $2); phasePut records
	// it as $4, kept $5 microseconds, unless it is recorded already.
	phaseGet, phasePut string
}

// newStatements returns the SQL of the store on the table of n.
// Microsecond parameters become intervals with make_interval, without a
// round trip through text.
func newStatements(n names) statements {
	t := n.table
	return statements{
		reserve: `INSERT INTO ` + t + ` AS r (scope, key, fingerprint, token, status, not_replayable, outcome_unknown, expires_at)
			VALUES ($1, $2, $3, nextval('` + strings.ReplaceAll(n.seq, "'", "''") + `'), $4, $5, $5,
				now() + make_interval(secs => $6::float8 / 1e6))
			ON CONFLICT (scope, key) DO UPDATE SET
				fingerprint = excluded.fingerprint, token = excluded.token, status = excluded.status,
				not_replayable = excluded.not_replayable, outcome_unknown = excluded.outcome_unknown,
				header = NULL, body = NULL, expires_at = excluded.expires_at
			WHERE r.expires_at <= now()
			RETURNING token`,
		live: `SELECT fingerprint, token, status, not_replayable, outcome_unknown, header, body,
				(extract(epoch FROM expires_at - now()) * 1e6)::bigint
			FROM ` + t + ` WHERE scope = $1 AND key = $2 AND expires_at > now()`,
		renew: `UPDATE ` + t + ` SET expires_at = now() + make_interval(secs => $4::float8 / 1e6)
			WHERE scope = $1 AND key = $2 AND token = $3 AND status IS NULL AND expires_at > now()`,
		// $4 status, $5 not replayable, $6 outcome unknown, $7 header,
		// $8 body, $9 microseconds of TTL.
		complete: `UPDATE ` + t + ` SET status = $4, not_replayable = $5, outcome_unknown = $6,
				header = $7, body = $8, expires_at = now() + make_interval(secs => $9::float8 / 1e6)
			WHERE scope = $1 AND key = $2 AND token = $3 AND status IS NULL AND expires_at > now()`,
		completeTx: `WITH u AS (UPDATE ` + t + ` SET status = $4, not_replayable = $5, outcome_unknown = $6,
				header = $7, body = $8, expires_at = now() + make_interval(secs => $9::float8 / 1e6)
			WHERE scope = $1 AND key = $2 AND token = $3 RETURNING 1)
			SELECT 1 / count(*) FROM u`,
		reap: `DELETE FROM ` + t + ` WHERE (scope, key) IN (
			SELECT scope, key FROM ` + t + ` WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		reapPhases: `DELETE FROM ` + n.phases + ` WHERE (scope, key, phase) IN (
			SELECT scope, key, phase FROM ` + n.phases + ` WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		phaseGet: `SELECT result FROM ` + n.phases + ` WHERE scope = $1 AND key = $2 AND phase = $3 AND expires_at > now()`,
		phasePut: `INSERT INTO ` + n.phases + ` AS p (scope, key, phase, result, expires_at)
			VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8 / 1e6))
			ON CONFLICT (scope, key, phase) DO UPDATE SET result = excluded.result, expires_at = excluded.expires_at
			WHERE p.expires_at <= now()
			RETURNING 1`,
		// An ended lease is deleted all the same, and reported lost.
		release: `DELETE FROM ` + t + ` WHERE scope = $1 AND key = $2 AND token = $3 AND status IS NULL
			RETURNING expires_at > now()`,
	}
}

// splitKey splits a store key (idempotency.StoreKey) into its scope, up to
// and including the last newline, and the client's key after it.
func splitKey(skey string) (scope []byte, key string, err error) {
	i := strings.LastIndexByte(skey, '\n') + 1
	key = skey[i:]
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return []byte(skey[:i]), key, nil
}

// bound returns ctx bounded by the store's timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Reserve implements idempotency.Store. A lease of zero or less reserves
// the key with a lease that has already ended. With the context of an
// InTx function, the key is reserved inside that transaction (see InTx).
func (s *Store) Reserve(ctx context.Context, skey string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	if s.pool == nil {
		return idempotency.Record{}, false, ErrNilPool
	}
	scope, key, err := splitKey(skey)
	if err != nil {
		return idempotency.Record{}, false, err
	}
	if t := s.txOf(ctx); t != nil {
		// Waiting for a concurrent holder of the key is not the database
		// being slow: it gets Wait on top of the timeout.
		ctx, cancel := context.WithTimeout(ctx, s.timeout+s.wait)
		defer cancel()
		return s.reserveTx(ctx, t, scope, key, fp, lease)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := time.Now()
	// One round trip: the insert, then (in a new snapshot, which sees a
	// conflicting row committed while the insert waited) the live row.
	b := &pgx.Batch{}
	b.Queue(s.sql.reserve, scope, key, fp[:], nil, false, max(lease, 0).Microseconds())
	b.Queue(s.sql.live, scope, key)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	var token int64
	err = br.QueryRow().Scan(&token)
	if err == nil {
		return idempotency.Record{Fingerprint: fp, Token: uint64(token), Expires: now.Add(lease)}, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
	}
	rec, found, err := scanRecord(br.QueryRow(), now)
	if err != nil {
		return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", err)
	}
	if !found {
		// The row that stopped the insert expired or was released between
		// the two statements: the key is free again, but it was not free
		// for this call. The caller answers as for a store failure and the
		// client retries.
		return idempotency.Record{}, false, fmt.Errorf("pgstore: reserve: %w", errVanished)
	}
	return rec, false, nil
}

// errVanished: a conflicting row was gone when Reserve read it.
var errVanished = errors.New("the conflicting record ended during the reservation; retry")

// scanRecord reads a row of the live statement; found is false for no row.
func scanRecord(row pgx.Row, now time.Time) (rec idempotency.Record, found bool, err error) {
	var (
		fp            []byte
		token         int64
		status        *int16
		notReplayable bool
		unknown       bool
		header, body  []byte
		left          int64
	)
	err = row.Scan(&fp, &token, &status, &notReplayable, &unknown, &header, &body, &left)
	if errors.Is(err, pgx.ErrNoRows) {
		return idempotency.Record{}, false, nil
	}
	if err != nil {
		return idempotency.Record{}, false, err
	}
	if len(fp) != len(rec.Fingerprint) {
		return idempotency.Record{}, false, fmt.Errorf("%w: fingerprint of %d bytes", ErrMalformed, len(fp))
	}
	copy(rec.Fingerprint[:], fp)
	rec.Token = uint64(token)
	rec.Expires = now.Add(time.Duration(left) * time.Microsecond)
	if status != nil {
		h, err := decodeHeader(header)
		if err != nil {
			return idempotency.Record{}, false, err
		}
		rec.Response = &idempotency.Response{Status: int(*status), Header: h, Body: body,
			NotReplayable: notReplayable, OutcomeUnknown: unknown}
		if notReplayable {
			rec.Response.Body = nil
		}
	}
	return rec, true, nil
}

// Complete implements idempotency.Store. A nil resp is stored as a
// NotReplayable 200; a ttl of zero or less completes the key with a TTL
// that has already ended. With the context of an InTx function, a key the
// transaction reserved is completed with its COMMIT.
func (s *Store) Complete(ctx context.Context, skey string, token uint64, resp *idempotency.Response, ttl time.Duration) error {
	if s.pool == nil {
		return ErrNilPool
	}
	scope, key, err := splitKey(skey)
	if err != nil {
		return err
	}
	c, err := s.columns(resp)
	if err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if t := s.txOf(ctx); t != nil {
		return s.completeTx(ctx, t, scope, key, token, c, ttl)
	}
	return s.completeIn(ctx, s.pool, scope, key, token, c, ttl)
}

// completeIn runs the complete statement on q.
func (s *Store) completeIn(ctx context.Context, q queryer, scope []byte, key string, token uint64, c responseColumns, ttl time.Duration) error {
	tag, err := q.Exec(ctx, s.sql.complete, scope, key, int64(token),
		c.status, c.notReplayable, c.unknown, c.header, c.body, max(ttl, 0).Microseconds())
	if err != nil {
		return fmt.Errorf("pgstore: complete: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// responseColumns are the columns that hold a stored response.
type responseColumns struct {
	status        int16
	notReplayable bool
	unknown       bool
	header, body  []byte
}

// columns returns the columns that store resp: a nil resp is a
// NotReplayable 200; a response that is NotReplayable or OutcomeUnknown,
// or over the size bound, is kept as NotReplayable, without its headers
// and body.
func (s *Store) columns(resp *idempotency.Response) (responseColumns, error) {
	if resp == nil {
		return responseColumns{status: 200, notReplayable: true}, nil
	}
	if resp.Status < 100 || resp.Status > 999 {
		return responseColumns{}, fmt.Errorf("%w: %d", ErrInvalidStatus, resp.Status)
	}
	c := responseColumns{status: int16(resp.Status), notReplayable: true, unknown: resp.OutcomeUnknown}
	if resp.NotReplayable || resp.OutcomeUnknown {
		return c, nil
	}
	header := encodeHeader(resp.Header)
	if len(header)+len(resp.Body) > s.maxResponse {
		return c, nil
	}
	c.notReplayable, c.header, c.body = false, header, resp.Body
	return c, nil
}

// Renew implements idempotency.Store. A lease of zero or less ends the
// reservation's lease now. A key reserved by the InTx transaction of ctx
// needs no lease (the transaction holds it): Renew returns nil for it.
func (s *Store) Renew(ctx context.Context, skey string, token uint64, lease time.Duration) error {
	if s.pool == nil {
		return ErrNilPool
	}
	scope, key, err := splitKey(skey)
	if err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var q queryer = s.pool
	if t := s.txOf(ctx); t != nil {
		if t.reservedBy(scope, key, token) != nil {
			return nil
		}
		if err := t.ready(ctx); err != nil {
			return fmt.Errorf("pgstore: renew: %w", err)
		}
		q = t.conn
	}
	tag, err := q.Exec(ctx, s.sql.renew, scope, key, int64(token), max(lease, 0).Microseconds())
	if err != nil {
		return fmt.Errorf("pgstore: renew: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Release implements idempotency.Store. A reservation whose lease has
// ended is deleted all the same (nobody else holds it), and ErrLeaseLost
// is returned. Releasing a key that the InTx transaction of ctx reserved
// makes that transaction roll back.
func (s *Store) Release(ctx context.Context, skey string, token uint64) error {
	if s.pool == nil {
		return ErrNilPool
	}
	scope, key, err := splitKey(skey)
	if err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var q queryer = s.pool
	if t := s.txOf(ctx); t != nil {
		if t.reservedBy(scope, key, token) != nil {
			t.release = true
			return nil
		}
		if err := t.ready(ctx); err != nil {
			return fmt.Errorf("pgstore: release: %w", err)
		}
		q = t.conn
	}
	var live bool
	err = q.QueryRow(ctx, s.sql.release, scope, key, int64(token)).Scan(&live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return idempotency.ErrLeaseLost
	case err != nil:
		return fmt.Errorf("pgstore: release: %w", err)
	case !live:
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Lookup implements idempotency.Store. With the context of an InTx
// function, it reads inside that transaction, where a key the transaction
// reserved is in flight.
func (s *Store) Lookup(ctx context.Context, skey string) (idempotency.Record, bool, error) {
	if s.pool == nil {
		return idempotency.Record{}, false, ErrNilPool
	}
	scope, key, err := splitKey(skey)
	if err != nil {
		return idempotency.Record{}, false, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var q queryer = s.pool
	if t := s.txOf(ctx); t != nil && t.begun {
		q = t.conn
	}
	rec, found, err := scanRecord(q.QueryRow(ctx, s.sql.live, scope, key), time.Now())
	if err != nil {
		return idempotency.Record{}, false, fmt.Errorf("pgstore: lookup: %w", err)
	}
	if t := s.txOf(ctx); t != nil && found && t.reservedBy(scope, key, rec.Token) != nil {
		rec.Response = nil // the row's OutcomeUnknown is for a transaction that ends unseen
	}
	return rec, found, nil
}

// Plain returns s as an idempotency.Store without InTx, for a middleware
// that should run handlers outside a transaction, as with any other store:
// a reservation committed at once and held by a renewed lease, the
// response streamed to the client as it is written. Use it for handlers
// whose effects are not (only) in this database.
func (s *Store) Plain() idempotency.Store { return plain{s} }

// plain is a Store without its transactional mode.
type plain struct{ s *Store }

func (p plain) Reserve(ctx context.Context, key string, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Record, bool, error) {
	return p.s.Reserve(ctx, key, fp, lease)
}

func (p plain) Renew(ctx context.Context, key string, token uint64, lease time.Duration) error {
	return p.s.Renew(ctx, key, token, lease)
}

func (p plain) Complete(ctx context.Context, key string, token uint64, resp *idempotency.Response, ttl time.Duration) error {
	return p.s.Complete(ctx, key, token, resp, ttl)
}

func (p plain) Release(ctx context.Context, key string, token uint64) error {
	return p.s.Release(ctx, key, token)
}

func (p plain) Lookup(ctx context.Context, key string) (idempotency.Record, bool, error) {
	return p.s.Lookup(ctx, key)
}
