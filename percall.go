package rebound

import (
	"context"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// Per-call control moved to package call (percall.Attempts, percall.NoRetry,
// percall.AttemptTimeout, percall.NoKey, percall.Key), so that a name of package
// rebound spelt WithX is always an Option of a Transport, and a per-call
// setting is always call.X on a context. The functions below are the
// same settings under their old names, kept for one release.

// WithAttempts returns a copy of ctx in which a call makes at most n
// attempts, the first included, whatever its policy's Retry.MaxAttempts
// (more or fewer). n below 1 counts as 1.
//
// Deprecated: use percall.Attempts, the same setting.
func WithAttempts(ctx context.Context, n int) context.Context {
	return transport.WithAttempts(ctx, n)
}

// NoRetry returns a copy of ctx in which a call makes one attempt and
// gets its outcome as it came: for a caller that retries at a higher level
// or must fail fast.
//
// Deprecated: use percall.NoRetry, the same setting.
func NoRetry(ctx context.Context) context.Context { return transport.NoRetry(ctx) }

// WithAttemptTimeout returns a copy of ctx in which each attempt of a call
// is bounded by d, instead of its policy's Retry.AttemptTimeout; d ≤ 0
// removes the per-attempt limit for the call.
//
// Deprecated: use percall.AttemptTimeout, the same setting.
func WithAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return transport.WithAttemptTimeout(ctx, d)
}

// WithoutKey returns a copy of ctx in which a POST or PATCH gets no
// generated Idempotency-Key: for an endpoint that rejects unknown headers.
// A key given with idempotency.WithKey, or set on the request, still goes
// out.
//
// Deprecated: use percall.NoKey, the same setting.
func WithoutKey(ctx context.Context) context.Context { return idempotency.WithoutKey(ctx) }
