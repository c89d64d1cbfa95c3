package transport

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Pacing spreads a server's remaining quota over the time left in its
// window, so that a busy client does not spend the quota at once and meet
// 429s for the rest of the window.
//
// A response carrying quota headers (classify.Quota: RateLimit,
// RateLimit-Remaining, X-RateLimit-Remaining with their resets) starts or
// updates its host's pacer, a token bucket over the window:
//
//	avail  = remaining − attempts sent to the host and not yet answered
//	         (the server may not have counted them)
//	burst  = max(1, avail/10)                 tokens that may go at once
//	tokens = min(tokens now, burst)            never refilled upward by a header
//	rate   = (avail − tokens) / time to reset  tokens per second
//
// so that tokens + rate·window = avail: however the calls arrive, no more
// than the server said it would take go out before the reset. Each attempt
// takes a token; without one it waits for the refill, and successive waits
// are 1/rate apart, so a crowd of callers is spaced evenly. A client that
// sends slower than the rate never waits. With nothing left (remaining 0)
// attempts wait for the reset.
//
// The pacer ends with its window: after the reset, attempts go freely until
// a response brings the new window's quota. A wait over MaxRetryAfter is
// not imposed (the attempt goes, and a 429's own hint then holds the host),
// so a hostile header cannot stall a client for long; a call whose deadline
// ends before its turn returns at once, unsent, with a *HoldError. With no
// quota header ever seen, the check on every attempt is one atomic load.
// Config.DisablePacing turns it off.

// maxPacedHosts bounds the hosts a Transport paces; when full, a new host
// is not paced (its 429s still hold it).
const maxPacedHosts = 4096

type pacers struct {
	n  atomic.Int32 // entries in m; 0 is the fast path
	mu sync.Mutex
	m  map[string]*pacer
}

// pacer is one host's token bucket. Guarded by pacers.mu.
type pacer struct {
	windowEnd time.Time
	tokens    float64 // may go negative: reservations not yet refilled
	rate      float64 // tokens per second
	last      time.Time
	inflight  int // attempts reserved and not yet answered
}

// refill adds the tokens earned since p.last.
func (p *pacer) refill(now time.Time) {
	if dt := now.Sub(p.last); dt > 0 {
		p.tokens += p.rate * dt.Seconds()
		p.last = now
	}
}

// reserve takes a token of host's pacer and returns how long the attempt
// must wait for it. paced is false when the host is not paced (the attempt
// goes now and reserves nothing). A reservation is given back with cancel
// or settled with answered.
func (ps *pacers) reserve(host string, now time.Time, maxWait time.Duration) (wait time.Duration, paced bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.m[host]
	if p == nil {
		return 0, false
	}
	if !now.Before(p.windowEnd) {
		if p.inflight == 0 {
			delete(ps.m, host)
			ps.n.Store(int32(len(ps.m)))
		}
		return 0, false
	}
	p.refill(now)
	p.tokens--
	switch {
	case p.tokens >= 0:
		wait = 0
	case p.rate > 0:
		wait = time.Duration(-p.tokens / p.rate * float64(time.Second))
	default:
		wait = p.windowEnd.Sub(now)
	}
	if end := now.Add(wait); end.After(p.windowEnd) {
		wait = p.windowEnd.Sub(now) // the reset refills everything
	}
	if wait > maxWait {
		p.tokens++
		return 0, false
	}
	if wait == 0 {
		p.inflight++
	}
	return wait, true
}

// sent records that an attempt which waited for its reservation goes out.
// A waiting reservation is counted by the negative tokens; once sent, the
// attempt is in flight until answered.
func (ps *pacers) sent(host string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[host]; p != nil {
		p.inflight++
	}
}

// cancel gives back a reservation whose attempt waited and is not sent.
func (ps *pacers) cancel(host string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[host]; p != nil {
		p.tokens++
	}
}

// answered settles a reservation (reserved) and, when the response carried
// a quota (ok), updates host's pacer from it: remaining requests until a
// reset in d.
func (ps *pacers) answered(host string, reserved bool, remaining int64, d time.Duration, ok bool, now time.Time) {
	if !reserved && !ok {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.m[host]
	if p != nil && reserved {
		p.inflight = max(0, p.inflight-1)
	}
	if !ok {
		return
	}
	if p == nil {
		if len(ps.m) >= maxPacedHosts {
			return
		}
		if ps.m == nil {
			ps.m = make(map[string]*pacer)
		}
		p = &pacer{tokens: math.Inf(1), last: now}
		ps.m[host] = p
		ps.n.Store(int32(len(ps.m)))
	}
	p.refill(now)
	avail := float64(remaining) - float64(p.inflight)
	if avail < 0 {
		avail = 0
	}
	burst := math.Max(1, math.Floor(avail/10))
	if avail == 0 {
		burst = 0
	}
	p.tokens = math.Min(p.tokens, burst)
	p.rate = 0
	if avail > p.tokens {
		p.rate = (avail - math.Max(p.tokens, 0)) / d.Seconds()
	}
	p.windowEnd = now.Add(d)
	p.last = now
}
