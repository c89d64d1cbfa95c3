package admission

import (
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/internal/spread"

	"github.com/rebound-http/rebound/classify"
)

// signalKind says what a response tells admission.
type signalKind uint8

const (
	signalNone     signalKind = iota // admitted, nothing announced
	signalThrottle                   // a 429, or a retryable status with a wait hint
	signalQuota                      // admitted, with a quota
)

// signal is what one response says about its key's pace.
type signal struct {
	kind      signalKind
	hostWide  bool          // a 5xx's hint: it pauses every partition of the host
	hasHint   bool          // hint is set
	hint      time.Duration // the server's wait hint
	quota     bool          // remaining and reset are set
	remaining int64
	reset     time.Duration
}

// read returns what resp says. A nil resp says nothing.
func (a *Admission) read(resp *http.Response, now time.Time) signal {
	var s signal
	if resp == nil {
		return s
	}
	h := resp.Header
	if code := resp.StatusCode; code == http.StatusTooManyRequests || code >= 400 && a.cfg.Retryable.Has(code) && len(h) > 0 {
		hint, ok := classify.WaitHint(h, now)
		if code == http.StatusTooManyRequests || ok {
			s.kind, s.hasHint, s.hint = signalThrottle, ok, hint
			s.hostWide = code != http.StatusTooManyRequests
		}
	}
	if !a.cfg.DisableQuota && hasQuota(h) {
		if r, t, ok := classify.Quota(h, now); ok {
			s.quota, s.remaining, s.reset = true, r, t
			if s.kind == signalNone {
				s.kind = signalQuota
			}
		}
	}
	return s
}

// mayTell reports, without reading the clock or parsing, whether resp may
// carry a signal: a status that can be a throttle, or quota headers.
func (a *Admission) mayTell(resp *http.Response) bool {
	code := resp.StatusCode
	return code == http.StatusTooManyRequests || code >= 400 && a.cfg.Retryable.Has(code) || !a.cfg.DisableQuota && hasQuota(resp.Header)
}

// hasQuota reports, in a few map lookups, whether h may carry a quota.
func hasQuota(h http.Header) bool {
	if len(h) == 0 {
		return false
	}
	return h["Ratelimit"] != nil || h["Ratelimit-Remaining"] != nil || h["X-Ratelimit-Remaining"] != nil
}

// apply feeds one reported attempt to st: its signal, whether a response
// came (responded), and when its turn was given (zero for a turn given
// before st existed). Called with a.mu held.
func (a *Admission) apply(st *state, sig signal, responded bool, granted, now time.Time) {
	st.roll(now)
	st.used = now
	st.cur.sent++
	switch {
	case sig.kind == signalThrottle:
		st.cur.throttled++
		st.lastT = now
		if sig.hasHint && sig.hint > a.cfg.MaxWait {
			break // over the cap: the call that got it gives up; nothing is paused
		}
		if granted.Before(st.created) {
			// A turn given before the key had a state (the throttle that
			// made it, and others already in flight): there is no history
			// to judge it by, and one throttle is not a pattern. It delays
			// only its own call.
			break
		}
		_, admitted := st.rates(now)
		switch {
		case sig.hasHint && admitted == 0 && (now.Sub(st.created) >= 2*bucketLen || st.cur.throttled+st.prev.throttled >= pauseEvidence):
			// Nothing admitted: the server asks for a pause. A state
			// younger than the second its rates cover does not know what
			// the host admitted just before its first throttle; there it
			// takes more than a burst's refusals (two refusals of a burst
			// that followed admitted calls would otherwise pause every
			// call for the hint).
			end := now.Add(sig.hint + spread.Hint(sig.hint, a.cfg.Spread, rand.Float64()))
			if sig.hostWide {
				if end.After(st.host.pauseUntil) {
					st.host.pauseUntil = end
				}
			} else if end.After(st.pauseUntil) {
				st.pauseUntil, st.pauseLimit = end, LimitHint
			}
			st.release(end, now)
		case a.cfg.DisablePace:
		case st.rate > 0 || st.cur.sent+st.prev.sent >= paceSample && st.throttledShare() >= paceShare:
			// Others were admitted: a limiter refusing the excess, and
			// enough of it to be worth a pace (a few refusals of bursts
			// under the limit cost less than making every call wait).
			st.cut(granted, now)
		}
	case responded:
		st.cur.admitted++
		st.unpause(now)
		st.grow(now)
	}
	if sig.quota {
		st.setQuota(sig.remaining, sig.reset, a.cfg.MaxWait, now)
	}
}

// dispatch gives turns to the queue's head while their time has come, and
// sets the timer for the next one. Called with a.mu held.
func (a *Admission) dispatch(st *state, now time.Time) {
	for len(st.queue) > 0 {
		at, _ := st.earliest(now)
		if at.After(now) {
			a.arm(st, at.Sub(now))
			return
		}
		w := st.queue[0]
		copy(st.queue, st.queue[1:])
		st.queue[len(st.queue)-1] = nil
		st.queue = st.queue[:len(st.queue)-1]
		w.iv, w.at, w.granted = st.grant(now), now, true
		close(w.ch)
	}
	if st.timerSet {
		st.timer.Stop()
		st.timerSet = false
	}
}

// arm sets st's timer to dispatch in d. Called with a.mu held.
func (a *Admission) arm(st *state, d time.Duration) {
	if st.timer == nil {
		st.timer = time.AfterFunc(d, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			st.timerSet = false
			a.dispatch(st, time.Now())
		})
	} else {
		st.timer.Reset(d)
	}
	st.timerSet = true
}
