package pgstore

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// maxTableName is the longest table name accepted: PostgreSQL truncates
// names to 63 bytes, and the expiry index's name adds indexSuffix.
const maxTableName = 63 - len(indexSuffix)

// indexSuffix makes the expiry index's name from the table's.
const indexSuffix = "_expires_idx"

// The table, one row per (scope, key):
//
//	column           type         holds
//	scope            bytea        the store key up to and including its last
//	                              newline (idempotency.StoreKey's separator);
//	                              empty for a key stored without a scope
//	key              text         the client's key (the rest of the store key)
//	fingerprint      bytea        SHA-256 of the request, 32 bytes
//	token            bigint       the reservation's fencing token, from the
//	                              table's sequence: never reused
//	status           smallint     the stored response's status; NULL in flight
//	not_replayable   boolean      the response was sent but not kept
//	outcome_unknown  boolean      the handler's outcome is unknown
//	header           bytea        the response's headers, encoded (header.go);
//	                              NULL when nil
//	body             bytea        the response's body; NULL when nil
//	expires_at       timestamptz  end of the lease, then of the TTL
//
// The primary key is (scope, key); expires_at has an index of its own for
// the reaper. The recovery points of atomic phases (see Phase) are rows
// of a second table, Table+"_phases": scope and key as above, phase text
// (the phase's name), result bytea, expires_at timestamptz; primary key
// (scope, key, phase), and an index on expires_at. Keeping the scope's separator in the scope column keeps a key
// with no scope apart from one with an empty scope. A row takes about 100
// bytes besides its key, scope, headers and body.
const schemaSQL = `CREATE SEQUENCE IF NOT EXISTS %[3]s;
CREATE TABLE IF NOT EXISTS %[1]s (
	scope           bytea       NOT NULL,
	key             text        NOT NULL,
	fingerprint     bytea       NOT NULL,
	token           bigint      NOT NULL,
	status          smallint,
	not_replayable  boolean     NOT NULL DEFAULT false,
	outcome_unknown boolean     NOT NULL DEFAULT false,
	header          bytea,
	body            bytea,
	expires_at      timestamptz NOT NULL,
	PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (expires_at);
CREATE TABLE IF NOT EXISTS %[4]s (
	scope      bytea       NOT NULL,
	key        text        NOT NULL,
	phase      text        NOT NULL,
	result     bytea       NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (scope, key, phase)
);
CREATE INDEX IF NOT EXISTS %[5]s ON %[4]s (expires_at);`

// names holds the quoted identifiers of a store's table, index and
// sequence.
type names struct {
	table       string // possibly schema-qualified, quoted
	index       string // unqualified, quoted
	seq         string // qualified like table, quoted
	phases      string // qualified like table, quoted
	phasesIndex string // unqualified, quoted
}

// phasesSuffix and phasesIndexSuffix make the recovery points' table and
// index names from the table's.
const (
	phasesSuffix      = "_phases"
	phasesIndexSuffix = "_phases_idx"
)

// seqSuffix makes the token sequence's name from the table's.
const seqSuffix = "_token_seq"

// newNames validates and quotes schema and table.
func newNames(schema, table string) (names, error) {
	for _, n := range [...]struct{ what, v string }{{"schema", schema}, {"table", table}} {
		if n.what == "table" && n.v == "" {
			return names{}, fmt.Errorf("%w: empty table name", ErrConfig)
		}
		if !utf8.ValidString(n.v) || strings.ContainsRune(n.v, 0) {
			return names{}, fmt.Errorf("%w: %s name %q is not valid UTF-8 without NUL", ErrConfig, n.what, n.v)
		}
		if len(n.v) > 63 {
			return names{}, fmt.Errorf("%w: %s name %q is over 63 bytes", ErrConfig, n.what, n.v)
		}
	}
	if len(table) > maxTableName {
		return names{}, fmt.Errorf("%w: table name %q is over %d bytes (the expiry index's name adds %q)",
			ErrConfig, table, maxTableName, indexSuffix)
	}
	qualify := func(name string) string {
		if schema == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{schema, name}.Sanitize()
	}
	return names{
		table:       qualify(table),
		index:       pgx.Identifier{table + indexSuffix}.Sanitize(),
		seq:         qualify(table + seqSuffix),
		phases:      qualify(table + phasesSuffix),
		phasesIndex: pgx.Identifier{table + phasesIndexSuffix}.Sanitize(),
	}, nil
}

// SchemaSQL returns the SQL that Migrate runs: the token sequence, the
// table and its expiry index, the recovery points' table and its expiry
// index, each created only if absent. Ship it with a service's own
// migrations instead of calling Migrate, if that is how the service
// manages its schema.
func (s *Store) SchemaSQL() string {
	return fmt.Sprintf(schemaSQL, s.names.table, s.names.index, s.names.seq, s.names.phases, s.names.phasesIndex)
}

// Migrate creates the store's sequence, table and index if they do not
// exist. It is
// safe to run at every start and from several processes at once (an
// advisory lock orders them). It does not create the schema named by
// Config.Schema.
func (s *Store) Migrate(ctx context.Context) error {
	if s.pool == nil {
		return ErrNilPool
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// CREATE ... IF NOT EXISTS still races with itself (a unique
	// violation in the catalogue); the lock serialises concurrent callers.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "rebound-pgstore:"+s.names.table); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, s.SchemaSQL(), pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	return nil
}

// DefaultReapBatch is the number of rows Reap deletes per statement when
// given zero or less.
const DefaultReapBatch = 1000

// Reap deletes expired records and recovery points, batch rows per
// statement (zero or less means DefaultReapBatch), until none is left or
// ctx ends, and returns how many it deleted. Each batch is its own short
// transaction, bounded by Config.Timeout, that skips rows
// another transaction holds, so Reap never waits for a request and never
// holds many locks. Expired rows do no harm besides their space (a request
// takes over an expired key), so a service runs Reap on a schedule of its
// choosing, say every few minutes, from one process or several.
func (s *Store) Reap(ctx context.Context, batch int) (int64, error) {
	if s.pool == nil {
		return 0, ErrNilPool
	}
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	var total int64
	for _, q := range [...]string{s.sql.reap, s.sql.reapPhases} {
		for {
			bctx, cancel := s.bound(ctx)
			tag, err := s.pool.Exec(bctx, q, batch)
			cancel()
			if err != nil {
				return total, fmt.Errorf("pgstore: reap: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return total, nil
}
