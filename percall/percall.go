// Package percall holds the per-call settings of a rebound chain: functions
// that take a request's context and return a copy that changes, for the
// calls made with it only, what the host's Policy says.
//
// The split of names is the point of the package: everything that
// configures a Transport once is an Option of package rebound and is
// spelt rebound.WithX (WithHostPolicy, WithRetry, WithObserver); everything
// that changes one call is a function of package percall that takes and
// returns a context.Context, spelt as what it sets. (The package is not
// named call: that is the name of many a variable and type in the code
// that would import it, this repository's own examples included.)
//
//	ctx = percall.Attempts(ctx, 2) // at most 2 attempts
//	ctx = percall.AttemptTimeout(ctx, 300*time.Millisecond)
//	ctx = percall.NoKey(ctx) // no generated Idempotency-Key
//	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
//
// Each function keeps the settings an earlier one made and changes its
// own, so they compose in any order. They apply to every call made with
// the context or one derived from it. The retry budget, the circuit
// breaker, the context's deadline and the server's wait hints bound such
// a call as any other.
//
// A process that never makes a per-call setting pays nothing for them;
// once one is made, every call through the retry loop pays one context
// lookup (about 2 ns on a shallow context).
package percall

import (
	"context"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// Attempts returns a copy of ctx in which a call makes at most n
// attempts, the first included, whatever its policy's Retry.MaxAttempts
// (more or fewer). An n below 1 counts as 1: no retries.
func Attempts(ctx context.Context, n int) context.Context {
	return transport.WithAttempts(ctx, n)
}

// NoRetry returns a copy of ctx in which a call makes one attempt and
// gets its outcome as it came: for a caller that retries at a higher
// level or must fail fast. It is Attempts(ctx, 1).
func NoRetry(ctx context.Context) context.Context { return transport.NoRetry(ctx) }

// AttemptTimeout returns a copy of ctx in which each attempt of a call is
// bounded by d instead of its policy's Retry.AttemptTimeout: the wait for
// response headers, and the reading of a response that is retried. A d
// of zero or less removes the per-attempt limit for the call; only the
// context's deadline bounds its attempts then.
func AttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return transport.WithAttemptTimeout(ctx, d)
}

// NoKey returns a copy of ctx in which a POST or PATCH gets no generated
// Idempotency-Key: for an endpoint that rejects headers it does not know.
// A key given with Key, or set on the request, still goes out.
func NoKey(ctx context.Context) context.Context { return idempotency.WithoutKey(ctx) }

// Key returns a copy of ctx in which a POST or PATCH is sent with the
// idempotency key key instead of a generated one. Use it when an
// operation is repeated at a higher level than the retry loop (a job
// re-run after a crash, a user pressing "pay" again) and the server must
// recognise it as the same one: persist the key with the job and pass it
// here. A key set this way is the caller's key (see Policy.KeysHonored
// for where it licenses retries). An empty key is ignored. It is
// idempotency.WithKey.
func Key(ctx context.Context, key string) context.Context {
	return idempotency.WithKey(ctx, key)
}
