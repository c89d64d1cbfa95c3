package transport

import (
	"context"
	"time"
)

// Attempt describes one attempt of a call, for the links inside the retry
// loop (the budget and the breaker) and for observers.
//
// The retry loop puts it in the request context of every attempt after the
// first. Its absence means "first attempt": a healthy call's only attempt
// carries no metadata, so it needs no copy of the request and no allocation.
// The zero value describes a first attempt.
type Attempt struct {
	// N is the attempt's number, from 1. The zero value means 1.
	N int
	// Start is when the call's first attempt returned its (retryable)
	// outcome; the loop reads the clock only once a retry is needed, so a
	// call that succeeds at once pays for no clock read. The zero value
	// means a first attempt. For a hedge it is when the first of the
	// attempts it joins was sent.
	Start time.Time
	// Hedge reports that the attempt is a hedge (see Config.Hedge): sent
	// while an earlier attempt of the call is still waiting. A hedge's N
	// is above 1, so a gate counts it as a retry (IsRetry), paid from the
	// retry budget. The zero value is an attempt sent alone.
	Hedge bool
}

// Retry reports whether the attempt is a retry (N > 1).
func (a Attempt) Retry() bool { return a.N > 1 }

type attemptKey struct{}

// AttemptFrom returns the attempt metadata that the retry loop put in ctx,
// or Attempt{N: 1} when there is none (a first attempt, or a request that
// did not come through a retry loop).
func AttemptFrom(ctx context.Context) Attempt {
	if ctx != nil {
		if a, ok := ctx.Value(attemptKey{}).(*Attempt); ok {
			return *a
		}
	}
	return Attempt{N: 1}
}

// IsRetry reports whether ctx belongs to a retry, not a first attempt.
// It is the cheap check a gate makes on every attempt.
func IsRetry(ctx context.Context) bool {
	if ctx == nil {
		return false
	}
	a, ok := ctx.Value(attemptKey{}).(*Attempt)
	return ok && a.N > 1
}

// WithAttempt returns a copy of ctx carrying a. The retry loop calls it for
// every retry; tests of inner links call it to simulate one.
func WithAttempt(ctx context.Context, a Attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, &a)
}
