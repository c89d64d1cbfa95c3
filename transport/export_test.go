package transport

import "time"

// HoldForTest extends t's hold of host to end, as a response with a wait
// hint would.
func HoldForTest(t *Transport, host string, end time.Time) {
	t.holds.hold(host, end, time.Now())
}
