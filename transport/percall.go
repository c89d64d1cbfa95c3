package transport

import (
	"context"
	"sync/atomic"
	"time"
)

// Per-call control. A call's context may carry settings that override the
// Transport's Config for that call only, and for every other call made
// with the same context or one derived from it:
//
//	ctx := transport.WithAttempts(ctx, 2)                  // at most 2 attempts
//	ctx = transport.WithAttemptTimeout(ctx, 300*time.Millisecond)
//	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
//
// Each function returns a copy of ctx that keeps the settings an earlier
// one made and changes its own. Every other bound still applies to the
// call (the budget, the breaker, the context's deadline, the server's
// wait hints).

// callOptions are the per-call settings in a context.
type callOptions struct {
	attempts       int // 0: the Config's
	attemptTimeout time.Duration
	timeoutSet     bool // attemptTimeout replaces the Config's
}

type callKey struct{}

// perCallUsed is set the first time a per-call setting is made. Until
// then the loop does not look for one, so a process that never uses them
// pays one atomic load per call and no context lookup.
var perCallUsed atomic.Bool

// withCall returns a copy of ctx whose call options are ctx's, changed by
// set.
func withCall(ctx context.Context, set func(*callOptions)) context.Context {
	var o callOptions
	if prev, ok := ctx.Value(callKey{}).(*callOptions); ok {
		o = *prev
	}
	set(&o)
	perCallUsed.Store(true)
	return context.WithValue(ctx, callKey{}, &o)
}

// WithAttempts returns a copy of ctx in which a call through the retry
// loop makes at most n attempts, the first included, instead of
// Config.MaxAttempts (more or fewer). An n below 1 counts as 1: no
// retries.
func WithAttempts(ctx context.Context, n int) context.Context {
	return withCall(ctx, func(o *callOptions) { o.attempts = max(n, 1) })
}

// NoRetry returns a copy of ctx in which a call through the retry loop
// makes one attempt and hands its outcome back as it came, for a call
// whose caller retries at a higher level or must fail fast. It is
// WithAttempts(ctx, 1).
func NoRetry(ctx context.Context) context.Context { return WithAttempts(ctx, 1) }

// WithAttemptTimeout returns a copy of ctx in which each attempt of a call
// through the retry loop is bounded by d, instead of
// Config.AttemptTimeout, with the same meaning (it bounds the wait for
// response headers, and the buffering of a retried response's body). A d
// of zero or less removes the per-attempt limit for the call: only the
// context bounds its attempts.
func WithAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return withCall(ctx, func(o *callOptions) { o.attemptTimeout, o.timeoutSet = max(d, 0), true })
}

// callSettings returns the attempts and the attempt timeout of a call
// with context ctx, whose Config gives attempts and timeout. The loop
// calls it only once perCallUsed is set.
func callSettings(ctx context.Context, attempts int, timeout time.Duration) (int, time.Duration) {
	o, ok := ctx.Value(callKey{}).(*callOptions)
	if !ok {
		return attempts, timeout
	}
	if o.attempts > 0 {
		attempts = o.attempts
	}
	if o.timeoutSet {
		timeout = o.attemptTimeout
	}
	return attempts, timeout
}
