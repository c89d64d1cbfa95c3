package idempotency

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"time"
)

// Errors a Store returns. They match with errors.Is.
var (
	// ErrLeaseLost: Complete or Release named a reservation that no longer
	// holds the key (its lease expired, and the key may have been reserved
	// again since).
	ErrLeaseLost = errors.New("idempotency: reservation lost")
	// ErrStoreFull: Reserve found no room for a new key (the store, or
	// the key's scope, holds all it may). The middleware answers 503 with
	// Retry-After and does not run the handler.
	ErrStoreFull = errors.New("idempotency: store full")
)

// Fingerprint identifies what a request asks for: a SHA-256 over its
// method, path, query, Content-Type, Content-Encoding and body. A key reused with a different fingerprint
// is refused with 422. The zero value is the fingerprint of nothing.
type Fingerprint [sha256.Size]byte

// Response is a handler's response as the middleware stores it for replay.
// A stored Response is never modified; Stores may share it between the
// records they return. The zero value has Status 0, which the middleware
// refuses to replay (ProblemInvalidRecord); the middleware always stores a
// status between 200 and 999.
type Response struct {
	// Status is the status code the handler wrote (200 when it wrote none;
	// 500 when it panicked before writing one).
	Status int
	// Header holds the headers the handler sent, without hop-by-hop ones.
	Header http.Header
	// Body is the response body; nil when NotReplayable.
	Body []byte
	// NotReplayable reports that the response was sent but could not be
	// kept: its body was over MiddlewareConfig.MaxResponseBytes or over
	// what the store had room for. The key still counts as used: a repeat
	// gets 410 Gone (ProblemNotReplayable), never a second run of the
	// handler.
	NotReplayable bool
	// OutcomeUnknown reports that the handler ran but the middleware does
	// not know what it did or answered: it panicked, took over the
	// connection (Hijack, or a 101 Switching Protocols), or returned
	// without writing anything after its client had gone. Its effect may
	// have happened, so the key still counts as used: a repeat gets 500
	// with ProblemOutcomeUnknown, never a second run. The middleware sets
	// NotReplayable too and stores no header or body, so a Store that
	// keeps only NotReplayable still refuses a second run.
	OutcomeUnknown bool
}

// size estimates the memory a Response holds, for a Store's byte bound.
func (r *Response) size() int64 {
	if r == nil {
		return 0
	}
	n := int64(len(r.Body)) + 64
	for k, vs := range r.Header {
		n += int64(len(k)) + 16
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// Record is what a Store holds for a key: a reservation while the first
// request with the key runs, then its response until the TTL ends. The
// zero value is not a valid record.
type Record struct {
	// Fingerprint is the fingerprint of the request that reserved the key.
	Fingerprint Fingerprint
	// Token identifies the reservation; Complete and Release must present
	// it. It is never zero for a record a Store returns.
	Token uint64
	// Response is the stored response, or nil while the key is in flight.
	Response *Response
	// Expires is when the record ends: the end of the lease while in
	// flight, the end of the TTL once completed.
	Expires time.Time
}

// InFlight reports whether the key is reserved and has no response yet.
func (r *Record) InFlight() bool { return r.Response == nil }

// Store holds idempotency records. Each method must be atomic with respect
// to the others on the same key: that is what makes one execution per key
// certain when many servers share the store. A database implements Reserve
// as an insert that fails on a duplicate key (then a select), Redis as
// SET NX PX (then a GET); Renew, Complete and Release check the token in
// the same transaction or script as they write.
//
// The token is the reservation's fencing token: every reservation of a key
// gets a token no earlier reservation of that key had, and only the holder
// of the current token may renew, complete or release it. A holder whose
// lease ended (it stalled, or lost its store for longer than the lease)
// finds its Complete refused with ErrLeaseLost, even when the key has been
// reserved again since.
//
// The middleware renews a reservation while its handler runs (every third
// of the lease), so a lease ends only when its holder has died or cannot
// reach the store: Lease bounds how long a crashed server's keys stay
// reserved, not how long a handler may run.
//
// Package storetest holds a conformance suite that every Store should
// pass: storetest.Run(t, newStore).
//
// Durations are relative to the store's own clock, so that servers with
// skewed clocks agree. Every method takes a context; the middleware calls
// Complete and Release with a context that is not cancelled when the client
// goes away, so a store should bound its own time.
type Store interface {
	// Reserve claims key for a request with fingerprint fp. When key is
	// free (absent, or its record expired), Reserve records an in-flight
	// reservation with a new non-zero token, expiring after lease, and
	// returns it with reserved true. Otherwise it returns the existing
	// record, unchanged, with reserved false. It returns ErrStoreFull when
	// it has no room.
	Reserve(ctx context.Context, key string, fp Fingerprint, lease time.Duration) (rec Record, reserved bool, err error)

	// Renew extends the reservation of key that has token to end lease
	// from now, and returns ErrLeaseLost when key is not reserved with
	// token (the lease expired, or the key was completed or released).
	// It never extends a completed record.
	Renew(ctx context.Context, key string, token uint64, lease time.Duration) error

	// Complete replaces the reservation of key that has token with resp,
	// kept for ttl. It returns ErrLeaseLost when key is not reserved with
	// token (the lease expired).
	Complete(ctx context.Context, key string, token uint64, resp *Response, ttl time.Duration) error

	// Release removes the reservation of key that has token, so the next
	// request with key runs afresh. It returns ErrLeaseLost when key is not
	// reserved with token.
	Release(ctx context.Context, key string, token uint64) error

	// Lookup returns the live record of key, and whether there is one. The
	// middleware learns what it needs from Reserve; Lookup serves tools,
	// tests and administrative endpoints.
	Lookup(ctx context.Context, key string) (rec Record, found bool, err error)
}

// TxStore is a Store that keeps its records in the database where the
// handler makes its effects, and can make both one transaction: the
// handler's writes and its stored response commit together, or neither
// does. It is optional; the middleware uses it when the Store it is given
// implements it.
//
// For each keyed request, the middleware calls InTx, and inside fn:
// Reserve (with fn's context); when the key was free, it runs the handler
// with fn's context as the request's context (the handler finds the
// transaction there, with the store's own accessor) and records its
// response without sending it; then Complete, also with fn's context. If
// fn returns nil, the store commits, and only then is the response sent.
// If fn returns an error, the store rolls back and returns an error that
// wraps it: the key was not used, the handler's writes are undone, and
// the middleware answers as if nothing ran (a panic continues; a handler
// that called Release has its own answer sent; otherwise 503).
//
// So in this mode a failed or panicking handler releases its key safely,
// a lease needs no renewal (the transaction holds the key until it ends,
// and a dead holder's transaction is rolled back by the database), the
// response body is held in memory until the commit (a body over
// MaxResponseBytes rolls back and is answered 500), and Hijack and Flush
// are not supported.
type TxStore interface {
	Store
	// InTx begins a transaction, calls fn with a context that carries
	// it, and commits if fn returns nil or rolls back if it returns an
	// error (or panics, after which the panic continues). It returns fn's
	// error, or the error of beginning or committing. Store methods
	// called with fn's context work inside the transaction. After a
	// transient failure of the transaction (a serialization failure, a
	// deadlock) it may roll back and call fn again in a new one: nothing
	// has been sent, and the middleware starts the request afresh.
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}
