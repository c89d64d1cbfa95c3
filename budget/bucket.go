package budget

import (
	"math"
	"sync/atomic"
	"time"
)

// DefaultPerSecond is the default rate of a TokenBucket, in retries per
// second.
const DefaultPerSecond = 10.0

// TokenBucketConfig configures a TokenBucket. The zero value is the default
// of every field: 10 retries per second, in bursts of up to 10.
type TokenBucketConfig struct {
	// PerSecond is the number of retries allowed per second, on average.
	// Zero, negative or NaN means 10. Rates below one per hour are raised
	// to one per hour; rates above 10⁹ per second are capped.
	PerSecond float64
	// Burst is the most retries allowed at once after a quiet spell: the
	// bucket's capacity. Zero or negative means PerSecond rounded up (at
	// least 1).
	Burst int
}

// TokenBucket is a retry budget of a fixed number of retries per second,
// whatever the traffic: the simple alternative to Ratio. First attempts
// are not counted (Deposit does nothing).
//
// It holds Burst tokens, refilled at PerSecond; a retry takes one. The
// state is a single instant, the "theoretical arrival time" of the generic
// cell rate algorithm: the time at which the bucket will be full again. A
// withdrawal moves it forward by one token's interval with a single
// compare-and-swap, so a TokenBucket takes no lock and never allocates.
//
// The zero value is a bucket with the default settings, full, ready to use.
// A TokenBucket is safe for concurrent use.
//
//	b := budget.NewTokenBucket(budget.TokenBucketConfig{PerSecond: 5})
//	if b.Withdraw(time.Now()) {
//		// send the retry
//	}
type TokenBucket struct {
	interval int64 // nanoseconds per token; 0 means the default
	burst    int64 // capacity in tokens; 0 means the default
	// full is the Unix nanosecond at which the bucket is (or was) full:
	// the tokens missing at instant t are (full − t) / interval.
	full atomic.Int64
}

// NewTokenBucket returns a full TokenBucket configured by cfg, whose zero
// fields take the defaults.
func NewTokenBucket(cfg TokenBucketConfig) *TokenBucket {
	rate := cfg.PerSecond
	if !(rate > 0) { // zero, negative or NaN
		rate = DefaultPerSecond
	}
	rate = min(max(rate, 1.0/3600), 1e9)
	burst := int64(cfg.Burst)
	if burst <= 0 {
		burst = int64(math.Ceil(rate))
	}
	return &TokenBucket{interval: int64(float64(time.Second) / rate), burst: burst}
}

// params returns the interval and burst, with the defaults for a zero
// TokenBucket.
func (b *TokenBucket) params() (interval, tolerance int64) {
	interval, burst := b.interval, b.burst
	if interval <= 0 {
		interval = int64(float64(time.Second) / DefaultPerSecond)
	}
	if burst <= 0 {
		burst = int64(DefaultPerSecond)
	}
	// Cap the tolerance so that now + tolerance cannot overflow for any
	// instant within a few centuries of today.
	const maxTolerance = int64(100 * 365 * 24 * time.Hour)
	if burst > maxTolerance/interval {
		return interval, maxTolerance
	}
	return interval, burst * interval
}

// Deposit does nothing: a TokenBucket does not depend on first attempts.
func (b *TokenBucket) Deposit(time.Time) {}

// Withdraw takes a token at now, if there is one, and reports whether it
// did.
func (b *TokenBucket) Withdraw(now time.Time) bool {
	n := now.UnixNano()
	interval, tolerance := b.params()
	for {
		full := b.full.Load()
		next := max(full, n) + interval
		if next-n > tolerance {
			return false
		}
		if b.full.CompareAndSwap(full, next) {
			return true
		}
	}
}

// Balance returns the tokens in the bucket at now, between 0 and Burst;
// Withdraw succeeds while it is ≥ 1.
func (b *TokenBucket) Balance(now time.Time) float64 {
	n := now.UnixNano()
	interval, tolerance := b.params()
	missing := max(b.full.Load()-n, 0)
	return max(float64(tolerance-missing)/float64(interval), 0)
}
