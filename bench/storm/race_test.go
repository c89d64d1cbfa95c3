//go:build race

package storm

// raceEnabled reports whether the tests run under the race detector,
// which makes every event several times slower; simulations shrink.
const raceEnabled = true
