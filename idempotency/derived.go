package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/binary"

	"github.com/google/uuid"
)

// derivedSpace is the UUID namespace of derived keys: the name-based
// (SHA-1) UUID of this function's documentation URL in the URL namespace.
var derivedSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://pkg.go.dev/github.com/rebound-http/rebound/idempotency#DerivedKey"))

// DerivedKey returns the idempotency key for a call named name that the
// handler of a keyed request makes to another service, and true; outside
// such a handler (no key, or not under Middleware) it returns "" and
// false.
//
// The key is deterministic, and stable across versions of this package:
// a function of the request's scope, its key and name, so every run of the handler for one key (a retry after a lost
// response, a rolled-back transaction, a crashed server) sends the same
// key downstream, and the downstream service deduplicates the call as
// this middleware deduplicates the request. Different names give
// different keys, so a handler names each downstream effect ("charge",
// "email") and may make several. Nothing of the scope or key can be read
// back from it: it is a UUID (version 8, RFC 9562) made of the first 122
// bits of a SHA-256, printable and accepted by servers that insist on
// UUIDs. Send it on a request, through rebound, with WithKey:
//
//	key, _ := idempotency.DerivedKey(r.Context(), "charge")
//	req, _ := http.NewRequestWithContext(idempotency.WithKey(r.Context(), key),
//		http.MethodPost, paymentsURL, body)
//
// That makes a handler with effects outside its database safe to run
// again: see the atomic phases of package pgstore.
func DerivedKey(ctx context.Context, name string) (string, bool) {
	skey, ok := StoreKeyOf(ctx)
	if !ok {
		return "", false
	}
	// The store key (scope and key) with its length, then the name: no
	// two (store key, name) pairs give the same input.
	data := make([]byte, 0, binary.MaxVarintLen64+len(skey)+len(name))
	data = binary.AppendUvarint(data, uint64(len(skey)))
	data = append(data, skey...)
	data = append(data, name...)
	return uuid.NewHash(sha256.New(), derivedSpace, data, 8).String(), true
}

// StoreKeyOf returns the key under which the middleware stores the
// request whose handler ctx belongs to (StoreKey of its scope and key),
// and true; outside such a handler, "" and false. Stores use it to keep
// state of their own per request, such as pgstore's recovery points.
func StoreKeyOf(ctx context.Context) (string, bool) {
	x, _ := ctx.Value(execKey{}).(*execution)
	if x == nil || x.skey == "" {
		return "", false
	}
	return x.skey, true
}
