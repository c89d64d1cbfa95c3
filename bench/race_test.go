//go:build race

package bench

// raceEnabled reports whether the tests run under the race detector,
// which makes every call several times slower; long simulations shrink.
const raceEnabled = true
