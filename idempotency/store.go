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
	// ErrStoreFull: Reserve found no room for a new key, even after
	// evicting completed entries (every entry is in flight).
	ErrStoreFull = errors.New("idempotency: store full")
)

// Fingerprint identifies what a request asks for: a SHA-256 over its
// method, path, query and body. A key reused with a different fingerprint
// is refused with 422. The zero value is the fingerprint of nothing.
type Fingerprint [sha256.Size]byte

// Response is a handler's response as the middleware stores it for replay.
// A stored Response is never modified; Stores may share it between the
// records they return. The zero value has Status 0, which the middleware
// refuses to replay (ProblemInvalidRecord); the middleware always stores a
// status between 200 and 999.
type Response struct {
	// Status is the status code the handler wrote (200 when it wrote none).
	Status int
	// Header holds the headers the handler sent, without hop-by-hop ones.
	Header http.Header
	// Body is the response body; nil when NotReplayable.
	Body []byte
	// NotReplayable reports that the response was sent but could not be
	// kept: its body was over MiddlewareConfig.MaxResponseBytes, or the
	// handler took over the connection. The key still counts as used: a
	// repeat gets 410 Gone, never a second run of the handler.
	NotReplayable bool
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
// SET NX PX (then a GET); Complete and Release check the token in the same
// transaction or script as they write.
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
