package transport

import (
	"time"

	"github.com/rebound-http/rebound/internal/spread"
)

// Backoff returns the full-jitter wait before retry n (n ≥ 1 counts the
// failed attempts so far): r·min(max, base·2^(n-1)), where r in [0, 1) is a
// uniform random value supplied by the caller. It never overflows, however
// large n is.
func Backoff(n int, base, max time.Duration, r float64) time.Duration {
	ceiling := max
	if n < 1 {
		n = 1
	}
	if n-1 < 62 && base <= max>>(n-1) {
		ceiling = base << (n - 1)
	}
	return scale(ceiling, r)
}

// DecorrelatedBackoff returns the decorrelated-jitter wait that follows a
// wait of prev: uniform in [base, min(max, 3·prev)), drawn with r in [0, 1)
// supplied by the caller. A prev below base counts as base. Clamping the
// range rather than the draw keeps waits spread out once they reach the
// cap, instead of piling up on it.
func DecorrelatedBackoff(prev, base, max time.Duration, r float64) time.Duration {
	if prev < base {
		prev = base
	}
	hi := max
	if prev <= max/3 {
		hi = 3 * prev
	}
	if hi <= base {
		return min(base, max)
	}
	return min(base+scale(hi-base, r), max)
}

// HintSpread returns the upward random spread added to a server's wait hint
// so that clients told the same value do not return in lockstep: r times
// the larger of a tenth of the hint and base.
func HintSpread(hint, base time.Duration, r float64) time.Duration {
	return spread.Hint(hint, base, r)
}

// scale returns d·r for r clamped to [0, 1).
func scale(d time.Duration, r float64) time.Duration {
	if r <= 0 || d <= 0 {
		return 0
	}
	if r >= 1 {
		r = 0.9999999999
	}
	return time.Duration(float64(d) * r)
}
