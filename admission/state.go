package admission

import (
	"math"
	"time"
)

// The pace learned from throttling (see the package doc).
const (
	// MinRate is the lowest pace, in turns per second, admission sets.
	MinRate = 0.5

	cubicBeta = 0.8
	// cubicC is CUBIC's scaling constant, relative to Rmax: the curve
	// R = Rmax·(1 + cubicC·(t − K)³) regains Rmax after K = ∛((1−β)/C) =
	// 2.7 s whatever the rate, and is 1 %, 8 % and 27 % over it one, two
	// and three seconds later (TCP's C = 0.4 is in segments: in requests
	// per second it takes 8 s to regain 1,000/s, and 0.8 s to regain 1/s).
	cubicC = 0.01
	// bucketLen is the span of one measuring bucket; rates are measured
	// over the current bucket and the one before it.
	bucketLen = 500 * time.Millisecond
	// minSpan is the shortest span a rate is measured over.
	minSpan = 50 * time.Millisecond
	// paceIdle: a key not throttled for this long while its pace is twice
	// what its callers ask goes back to no limit.
	paceIdle = 10 * time.Second
	// releaseFloor is the release pace after a pause of a key that never
	// had a response admitted, when its callers ask for less.
	releaseFloor = 10.0
	// paceShare is the least share of throttled attempts that sets a pace
	// on a key that has none.
	paceShare = 0.1
	// paceSample is the fewest reported attempts a throttled share sets
	// a pace on: the share of two or three is a burst's luck.
	paceSample = 10
	// pauseEvidence is the fewest throttles, none admitted, that pause a
	// key whose state is younger than the second its rates cover.
	pauseEvidence = 3
	// cutRound is the least time between two cuts of the pace.
	cutRound = 200 * time.Millisecond
	// floorShare is the share of the admitted rate (good) a cut never goes
	// below.
	floorShare = 0.5
	// probeAfter: a pace with calls waiting that has met no throttle for
	// this long probes (doubles every 200 ms) until the next throttle.
	probeAfter = 4 * time.Second
	// probeStep is what each admitted response adds to a probing pace, in
	// turns per second: the pace doubles every 1/probeStep seconds.
	probeStep = 5.0
)

// state is one key's admission. Guarded by Admission.mu.
type state struct {
	host *hostEntry
	cred uint64

	created, used time.Time

	pauseUntil time.Time // no turn before (a wait hint, a spent quota)
	pauseLimit Limit

	rate  float64   // learned pace, turns per second; 0: none
	rmax  float64   // CUBIC: the rate at the last cut
	k     float64   // CUBIC: seconds from the cut back to rmax
	t0    time.Time // the last cut
	lastT time.Time // the last throttle
	probe bool      // no throttle since the pace was set without evidence: grow fast

	quotaEnd   time.Time // the announced quota's reset
	quotaRate  float64   // turns per second the quota allows until quotaEnd
	quotaBurst float64   // turns the quota allows at once
	quotaLeft  int64     // the remaining count of the last quota seen

	next     time.Time // the earliest instant of the next turn
	queue    []*waiter
	inflight int

	cur, prev bucket
	good      float64 // the admitted rate before the last pause, for the release

	timer    *time.Timer // dispatches the queue's head when its turn comes
	timerSet bool
}

// bucket counts one measuring span.
type bucket struct {
	start                            time.Time
	asked, sent, admitted, throttled float64
}

// waiter is a queued turn.
type waiter struct {
	ch      chan struct{}
	granted bool
	at      time.Time
	iv      time.Duration
}

// roll starts a new bucket when the current one is full, and folds the
// finished bucket's admitted rate into good: at once when higher, by a
// tenth when lower, so that good remembers what the server took over the
// last few seconds, not only its latest refusals.
func (st *state) roll(now time.Time) {
	d := now.Sub(st.cur.start)
	if d < bucketLen {
		return
	}
	if d < 2*bucketLen {
		st.prev = st.cur
		if st.prev.sent > 0 {
			r := st.prev.admitted / d.Seconds()
			if r > st.good {
				st.good = r
			} else {
				st.good = 0.9*st.good + 0.1*r
			}
		}
	} else {
		st.prev = bucket{}
	}
	st.cur = bucket{start: now}
}

// rates returns what the key asked and had admitted per second over the
// last one to two buckets.
func (st *state) rates(now time.Time) (asked, admitted float64) {
	st.roll(now)
	start := st.cur.start
	a, ad := st.cur.asked, st.cur.admitted
	if !st.prev.start.IsZero() {
		start = st.prev.start
		a += st.prev.asked
		ad += st.prev.admitted
	}
	span := max(now.Sub(start), minSpan).Seconds()
	return a / span, ad / span
}

// throttledShare is the share of the last buckets' reported attempts that
// were throttled.
func (st *state) throttledShare() float64 {
	n := st.cur.admitted + st.cur.throttled + st.prev.admitted + st.prev.throttled
	if n == 0 {
		return 0
	}
	return (st.cur.throttled + st.prev.throttled) / n
}

// pause returns the instant before which no turn goes, and why.
func (st *state) pause() (time.Time, Limit) {
	if st.host.pauseUntil.After(st.pauseUntil) {
		return st.host.pauseUntil, LimitHint
	}
	return st.pauseUntil, st.pauseLimit
}

// interval returns the spacing of turns now, and what sets it.
func (st *state) interval(now time.Time) (time.Duration, Limit) {
	r, lim := st.rate, LimitPace
	if st.quotaRate > 0 && now.Before(st.quotaEnd) && (r == 0 || st.quotaRate < r) {
		r, lim = st.quotaRate, LimitQuota
	}
	if r <= 0 {
		return 0, LimitNone
	}
	return time.Duration(float64(time.Second) / r), lim
}

// tolerance is how far ahead of its spacing a turn may go: a tenth of a
// quota's turns at once, none for a learned pace.
func (st *state) tolerance(now time.Time, iv time.Duration, lim Limit) time.Duration {
	if lim == LimitQuota && st.quotaBurst > 1 {
		return time.Duration(float64(iv) * (st.quotaBurst - 1))
	}
	return 0
}

// earliest returns the earliest instant the next turn may go, ignoring the
// queue, and what sets it (LimitNone: now).
func (st *state) earliest(now time.Time) (time.Time, Limit) {
	at, lim := now, LimitNone
	if p, plim := st.pause(); p.After(at) {
		at, lim = p, plim
	}
	if iv, ilim := st.interval(now); iv > 0 {
		if t := st.next.Add(-st.tolerance(now, iv, ilim)); t.After(at) {
			at, lim = t, ilim
		}
	}
	return at, lim
}

// why names what limits the key now, for a refusal with no single cause.
func (st *state) why(now time.Time) Limit {
	if p, lim := st.pause(); p.After(now) {
		return lim
	}
	if _, lim := st.interval(now); lim != LimitNone {
		return lim
	}
	return LimitPace
}

// grant gives a turn now and returns the spacing it is charged.
func (st *state) grant(now time.Time) time.Duration {
	iv, _ := st.interval(now)
	if iv > 0 {
		base := st.next
		if base.Before(now) {
			base = now
		}
		st.next = base.Add(iv)
	}
	st.inflight++
	return iv
}

// giveBack returns a given turn that was not used.
func (st *state) giveBack(iv time.Duration, now time.Time) {
	st.inflight--
	if iv > 0 {
		st.next = st.next.Add(-iv)
		if st.next.Before(now) {
			st.next = now
		}
	}
}

// remove takes a waiter out of the queue.
func (st *state) remove(w *waiter) {
	for i, q := range st.queue {
		if q == w {
			copy(st.queue[i:], st.queue[i+1:])
			st.queue[len(st.queue)-1] = nil
			st.queue = st.queue[:len(st.queue)-1]
			return
		}
	}
}

// idle reports whether st holds nothing a caller depends on.
func (st *state) idle(now time.Time) bool {
	return len(st.queue) == 0 && st.inflight == 0 && !now.Before(st.pauseUntil) && !now.Before(st.host.pauseUntil)
}

// cut lowers the pace after a throttle of a turn given at granted (one
// cut per round: a turn given before the last cut, or within cutRound
// after it, does not cut again: the new pace takes that long to show, and
// a limiter that refuses everything for a while, such as a spent fixed
// window, would otherwise cut at every refusal).
func (st *state) cut(granted, now time.Time) {
	if st.rate > 0 && granted.Before(st.t0.Add(cutRound)) {
		return
	}
	_, admitted := st.rates(now)
	var base float64
	first := st.rate == 0
	switch {
	case !first:
		base = st.rate // the pace that met the limit
	case admitted > 0:
		base = admitted // the first cut: what the server took
	default:
		base = st.sentRate(now)
	}
	// The first pace is measured over the key's short history and may be
	// far below what the server admits: it probes up until its next
	// throttle, as TCP's slow start does. A later cut follows the curve.
	st.probe = first
	base = max(base, MinRate)
	st.rmax = base
	st.k = math.Cbrt((1 - cubicBeta) / cubicC)
	// Never below half of what the server has been taking: a limiter that
	// refuses everything for a while (a spent fixed window) would
	// otherwise cut the pace at every refusal down to MinRate, and CUBIC
	// takes seconds to climb back.
	st.rate = max(cubicBeta*base, floorShare*st.good, MinRate)
	st.t0 = now
}

// sentRate is the rate of turns reported over the last buckets.
func (st *state) sentRate(now time.Time) float64 {
	start, n := st.cur.start, st.cur.sent
	if !st.prev.start.IsZero() {
		start, n = st.prev.start, n+st.prev.sent
	}
	return n / max(now.Sub(start), minSpan).Seconds()
}

// grow raises the pace after an admitted response: by probeStep while
// probing (a pace set without evidence doubles every 200 ms until the
// first throttle, as TCP's slow start does), else along the CUBIC curve;
// capped at 1.5 times what callers ask (queued asks and retries
// included: the offered load), so a backlog is released at most half again
// as fast as calls arrive. After paceIdle without
// a throttle at a pace twice that, the key goes back to no limit.
func (st *state) grow(now time.Time) {
	if st.rate == 0 {
		return
	}
	asked, _ := st.rates(now)
	if !st.probe && len(st.queue) > 0 && asked > 1.25*st.rate && now.Sub(st.lastT) > probeAfter && now.Sub(st.t0) > probeAfter {
		// Calls arrive faster than the pace lets them go, and the server
		// has refused nothing for a while: its limit may be gone. Probe
		// for it fast rather than along the curve. (Closed-loop callers,
		// who ask again only when served, ask at the pace: they never
		// trigger it, and a bursty limiter is not overshot every 4 s.)
		st.probe = true
	}
	var r float64
	if st.probe {
		r = st.rate + probeStep
	} else {
		t := now.Sub(st.t0).Seconds() - st.k
		r = st.rmax * (1 + cubicC*t*t*t)
	}
	if asked > 0 {
		r = min(r, 1.5*asked) // a backlog goes at most half again as fast as callers ask
	}
	st.rate = max(r, MinRate)
	if now.Sub(st.lastT) > paceIdle && now.Sub(st.t0) > paceIdle && st.rate >= 1.5*asked && len(st.queue) == 0 {
		st.rate = 0
	}
}

// release sets the pace at which calls queued behind a pause go when it
// ends: what the key admitted before it, or twice what its callers ask
// (at least releaseFloor) when it never admitted anything; never all at
// once.
func (st *state) release(end, now time.Time) {
	asked, _ := st.rates(now)
	r, probe := st.good, false
	if r <= 0 {
		r, probe = max(2*asked, releaseFloor), true
	}
	r = max(r, MinRate)
	if st.rate > 0 && st.rate <= r {
		return
	}
	st.rate, st.rmax, st.k, st.t0, st.probe = r, r, 0, end, probe
}

// unpause ends a pause early: a response was admitted, so the server is
// taking requests and a limiter's excess is for the pace to handle.
func (st *state) unpause(now time.Time) {
	if st.pauseLimit == LimitHint && st.pauseUntil.After(now) {
		st.pauseUntil = now
	}
	if st.host.pauseUntil.After(now) {
		st.host.pauseUntil = now
	}
}

// setQuota takes an announced quota: remaining turns until reset from now.
// A quota with nothing left pauses the key until its reset (when that is
// within maxWait); otherwise the quota's pace is what is left, less what
// is in flight, over the time left.
func (st *state) setQuota(remaining int64, reset, maxWait time.Duration, now time.Time) {
	avail := float64(remaining) - float64(st.inflight)
	end := now.Add(reset)
	if now.Before(st.quotaEnd) && end.After(st.quotaEnd) && remaining <= st.quotaLeft {
		// The same window, with its reset in whole seconds rounded up:
		// the earliest reset seen is the closest to the true one.
		end = st.quotaEnd
	}
	st.quotaLeft = remaining
	if avail <= 0 {
		st.quotaRate, st.quotaEnd = 0, end
		if reset <= maxWait && end.After(st.pauseUntil) {
			st.pauseUntil, st.pauseLimit = end, LimitQuota
		}
		return
	}
	st.quotaRate = avail / end.Sub(now).Seconds()
	st.quotaBurst = max(1, math.Floor(avail/10))
	st.quotaEnd = end
}
