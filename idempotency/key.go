// Package idempotency implements both halves of the Idempotency-Key
// pattern (IETF httpapi draft "The Idempotency-Key HTTP Header Field"):
//
//   - on the client, Transport adds a fresh key to every POST and PATCH that
//     lacks one, once per call and outside the retry loop, so every attempt
//     of the call carries the same key;
//   - on the server, Middleware deduplicates by key: the first request with a
//     key runs the handler and stores its response, a repeat gets the stored
//     response back without running the handler, a concurrent repeat gets
//     409, and a repeat with a different body gets 422.
//
// A key alone does not make a retry safe: a server that ignores the header
// runs a repeated POST twice. So a generated key licenses a retry after an
// ambiguous failure (a reset after the request was written, a 5xx) only
// toward a host declared to deduplicate (Config.KeysHonored); toward any
// other, the POST is retried only when it provably was not sent or was
// answered 429, by the retry loop and by net/http alike. A key the caller
// sets (the header, or WithKey) is the caller's declaration and licenses
// retries (classify.Idempotent treats such a request as safe to repeat).
//
// The Store behind the middleware is an interface of five atomic operations
// (Reserve, Renew, Complete, Release, Lookup) that a database or Redis can
// implement, checked by package storetest; NewMemoryStore is the in-process
// one. A Store that also implements TxStore runs each request in one
// transaction: reserve, the handler's writes, the response, one commit.
package idempotency

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/rebound-http/rebound/classify"
)

// Header names and the replay marker.
const (
	// HeaderKey is the header that carries the key (the draft's name).
	HeaderKey = classify.HeaderIdempotencyKey
	// HeaderXKey is the older name, honoured by the client link (never
	// overwritten) and accepted by the middleware.
	HeaderXKey = classify.HeaderXIdempotencyKey
	// HeaderReplayed marks a response replayed from the store.
	HeaderReplayed = "Idempotent-Replayed"
)

// DefaultMaxKeyLength is the longest key, in bytes after unquoting, that
// ParseKey and the middleware accept by default.
const DefaultMaxKeyLength = 255

// Errors returned by ParseKey. They match with errors.Is.
var (
	ErrKeyEmpty   = errors.New("idempotency: empty key")
	ErrKeyTooLong = errors.New("idempotency: key too long")
	ErrKeyInvalid = errors.New("idempotency: malformed key")
)

// ParseKey parses the value of an Idempotency-Key header and returns the
// key. It accepts either form seen in practice:
//
//   - a structured-field string (RFC 8941 §3.3.3), the draft's syntax:
//     printable ASCII between double quotes, where only \" and \\ are
//     escapes; nothing may follow the closing quote (no parameters);
//   - a bare key, as most clients send a UUID: printable ASCII with no
//     space, quote, backslash or comma.
//
// Surrounding spaces and tabs are ignored. A key that is empty (ErrKeyEmpty),
// longer than DefaultMaxKeyLength bytes after unquoting (ErrKeyTooLong), or
// has any other byte (ErrKeyInvalid) is refused. ParseKey never panics and
// does not allocate for a bare key or a quoted key without escapes.
func ParseKey(v string) (string, error) {
	return parseKey(v, DefaultMaxKeyLength)
}

// parseKey is ParseKey with a length limit.
func parseKey(v string, max int) (string, error) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return "", ErrKeyEmpty
	}
	if v[0] != '"' {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' {
				return "", ErrKeyInvalid
			}
		}
		if len(v) > max {
			return "", ErrKeyTooLong
		}
		return v, nil
	}
	// Quoted: find the closing quote, noting whether escapes occur.
	escaped := false
	end := -1
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			if i+1 >= len(v) || v[i+1] != '"' && v[i+1] != '\\' {
				return "", ErrKeyInvalid
			}
			escaped = true
			i++
		case c == '"':
			end = i
		case c < ' ' || c >= 0x7f:
			return "", ErrKeyInvalid
		}
		if end >= 0 {
			break
		}
	}
	if end < 0 || end != len(v)-1 {
		return "", ErrKeyInvalid // unterminated, or something after the string
	}
	key := v[1:end]
	if escaped {
		var b strings.Builder
		b.Grow(len(key))
		for i := 0; i < len(key); i++ {
			if key[i] == '\\' {
				i++
			}
			b.WriteByte(key[i])
		}
		key = b.String()
	}
	switch {
	case key == "":
		return "", ErrKeyEmpty
	case len(key) > max:
		return "", ErrKeyTooLong
	}
	return key, nil
}

// randPool holds per-processor ChaCha8 generators, each seeded from
// crypto/rand. ChaCha8 is a cryptographically strong generator (it erases
// its key as it goes), so keys stay unguessable, but a key costs two
// Uint64 calls instead of a getrandom call, without a global lock and
// without touching google/uuid's process-wide EnableRandPool setting. A
// generator the pool drops is garbage; a new one is seeded afresh.
var randPool = sync.Pool{New: func() any {
	var seed [32]byte
	rand.Read(seed[:]) // never fails (crypto/rand, Go 1.24+)
	return mrand.NewChaCha8(seed)
}}

// random16 returns 16 cryptographically strong random bytes.
func random16() (u uuid.UUID) {
	g := randPool.Get().(*mrand.ChaCha8)
	binary.LittleEndian.PutUint64(u[:8], g.Uint64())
	binary.LittleEndian.PutUint64(u[8:], g.Uint64())
	randPool.Put(g)
	return u
}

// NewKeyV4 returns a random (version 4) UUID in its canonical 36-character
// form. Its randomness comes from ChaCha8 generators seeded from
// crypto/rand, one per processor; see Config.NewKey. It is safe for concurrent
// use and costs one allocation, the string.
func NewKeyV4() string {
	var b [uuidLen]byte
	encodeUUID(&b, newV4())
	return string(b[:])
}

// newV4 returns a random UUID with the version 4 and variant bits set.
func newV4() uuid.UUID {
	u := random16()
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u
}

// uuidLen is the length of a UUID's canonical text form.
const uuidLen = 36

// encodeUUID writes u's canonical form (lower-case hex, 8-4-4-4-12) to b.
func encodeUUID(b *[uuidLen]byte, u uuid.UUID) {
	const digits = "0123456789abcdef"
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = digits[c>>4], digits[c&0x0f]
		j += 2
	}
}

// poolReader reads from randPool, for google/uuid's *FromReader functions.
type poolReader struct{}

func (poolReader) Read(b []byte) (int, error) {
	for n := 0; n < len(b); n += 16 {
		u := random16()
		copy(b[n:], u[:])
	}
	return len(b), nil
}

// NewKeyV7 returns a time-ordered (version 7) UUID: a millisecond Unix
// timestamp followed by random bits, with google/uuid's sub-millisecond
// sequence making keys from one process strictly increasing. Sortable keys
// index better in a database's B-tree. It costs two allocations and takes
// google/uuid's process-wide lock for the sequence.
func NewKeyV7() string {
	u, err := uuid.NewV7FromReader(poolReader{})
	if err != nil { // poolReader never fails
		return NewKeyV4()
	}
	return u.String()
}
