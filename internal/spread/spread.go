// Package spread holds the random spread added to a server's wait hint so
// that clients told the same instant do not return in lockstep. The retry
// loop adds it to a retry's wait (transport.HintSpread) and admission to a
// pause's end: one rule for both.
package spread

import "time"

// Hint returns r times the larger of a tenth of d and base, with r clamped
// to [0, 1); zero when that larger value is not positive.
func Hint(d, base time.Duration, r float64) time.Duration {
	window := max(d/10, base)
	if r <= 0 || window <= 0 {
		return 0
	}
	if r >= 1 {
		r = 0.9999999999
	}
	return time.Duration(float64(window) * r)
}
