package rebound

import (
	"context"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// Per-call control: a request's context may change, for that call only,
// what its host's Policy says, and the settings apply to every call made
// with the context or one derived from it. Each function returns a copy of
// ctx that keeps the settings made before and changes its own:
//
//	ctx = rebound.WithAttempts(ctx, 2)
//	ctx = rebound.WithAttemptTimeout(ctx, 300*time.Millisecond)
//	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
//
// The retry budget, the circuit breaker, the context's deadline and the
// server's wait hints bound such a call as any other.

// WithAttempts returns a copy of ctx in which a call makes at most n
// attempts, the first included, whatever its policy's Retry.MaxAttempts
// (more or fewer). n below 1 counts as 1. See transport.WithAttempts.
func WithAttempts(ctx context.Context, n int) context.Context {
	return transport.WithAttempts(ctx, n)
}

// NoRetry returns a copy of ctx in which a call makes one attempt and
// gets its outcome as it came: for a caller that retries at a higher level
// or must fail fast. See transport.NoRetry.
func NoRetry(ctx context.Context) context.Context { return transport.NoRetry(ctx) }

// WithAttemptTimeout returns a copy of ctx in which each attempt of a call
// is bounded by d, instead of its policy's Retry.AttemptTimeout; d ≤ 0
// removes the per-attempt limit for the call. See
// transport.WithAttemptTimeout.
func WithAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return transport.WithAttemptTimeout(ctx, d)
}

// WithoutKey returns a copy of ctx in which a POST or PATCH gets no
// generated Idempotency-Key: for an endpoint that rejects unknown headers.
// A key given with idempotency.WithKey, or set on the request, still goes
// out. See idempotency.WithoutKey.
func WithoutKey(ctx context.Context) context.Context { return idempotency.WithoutKey(ctx) }
