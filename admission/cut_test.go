package admission

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A pace far above what the server takes while it refuses much of the
// excess (a first pace read from a limiter's burst: 10 admitted at once
// read as 200/s against nginx's 50/s) is cut to what the server took, not
// by β a round at a time: each round above the limit refuses calls that
// then wait their hint (nginx with burst=10 took 4 of its first 5 s to
// converge, at 83 % of its limit).
func TestCutFromOvershootStartsAtWhatTheServerTook(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	st := &state{created: now.Add(-2 * time.Second), rate: 176, rmax: 220, t0: now.Add(-time.Second), good: 60}
	// The last 800 ms: 40 admitted (50/s), 40 throttled.
	st.prev = bucket{start: now.Add(-800 * time.Millisecond), sent: 40, admitted: 20, throttled: 20}
	st.cur = bucket{start: now.Add(-300 * time.Millisecond), sent: 40, admitted: 20, throttled: 20}
	st.cut(now, now)
	// base = max(admitted 50/s, good 60/s) = 60; the pace β·60 = 48.
	assert.InDelta(t, 48, st.rate, 0.5)
	assert.InDelta(t, 60, st.rmax, 0.5)

	// Near the limit the pace that met it says more than the admitted
	// rate, which lags a growing pace: the cut is β of the pace.
	st = &state{created: now.Add(-2 * time.Second), rate: 60, rmax: 55, t0: now.Add(-time.Second), good: 50}
	st.prev = bucket{start: now.Add(-800 * time.Millisecond), sent: 40, admitted: 20, throttled: 20}
	st.cur = bucket{start: now.Add(-300 * time.Millisecond), sent: 40, admitted: 20, throttled: 20}
	st.cut(now, now)
	assert.InDelta(t, 48, st.rate, 0.5)

	// Few throttles: a pace growing past the admitted rate, not an
	// overshoot; β of the pace.
	st = &state{created: now.Add(-2 * time.Second), rate: 176, rmax: 150, t0: now.Add(-time.Second), good: 60}
	st.prev = bucket{start: now.Add(-800 * time.Millisecond), sent: 21, admitted: 20, throttled: 1}
	st.cur = bucket{start: now.Add(-300 * time.Millisecond), sent: 21, admitted: 20, throttled: 1}
	st.cut(now, now)
	assert.InDelta(t, 0.8*176, st.rate, 0.5)
}
