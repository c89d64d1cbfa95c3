//go:build !race

package breaker

// raceEnabled reports whether the race detector is on, which slows the
// simulations down enough to run fewer trials.
const raceEnabled = false
