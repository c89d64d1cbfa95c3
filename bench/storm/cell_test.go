package storm

import (
	"testing"
	"testing/synctest"
	"time"
)

// runCell runs c in its own bubble and returns its result and the real
// time it took.
func runCell(t *testing.T, c Cell) (*Result, time.Duration) {
	t.Helper()
	var r *Result
	start := time.Now()
	synctest.Test(t, func(t *testing.T) { r = Run(c) })
	return r, time.Since(start)
}

// runIn runs f in a bubble of its own.
func runIn(t *testing.T, f func()) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { f() })
}
