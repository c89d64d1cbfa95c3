package transport

import (
	"math"
	"sync"
	"time"
)

// Adaptive send rate (Config.AdaptiveRate): a per-host client-side rate
// limiter driven by the server's throttling, for servers that throttle
// without telling their quota (no RateLimit headers, see pace.go).
//
// A host's limiter stays off (it only measures the send rate, under one
// mutex per attempt) until the host throttles: a 429, or a 503 with a wait hint. From then on every
// attempt to it takes a token from a bucket filled at the allowed rate R
// (capacity max(1, R/10), so at most a tenth of a second's worth goes at
// once). R follows the CUBIC window curve (RFC 9438), as the AWS SDKs'
// adaptive retry mode does, with time in seconds and rates in requests per
// second:
//
//	on throttling at time t₀:  Rmax = R while callers queue for turns, else
//	                                  the measured send rate (the rate that met the limit)
//	                           R    = β·Rmax                       β = 0.8
//	                           K    = ∛(Rmax·(1−β)/C)              C = 0.4
//	on success at time t:      R    = C·(t − t₀ − K)³ + Rmax
//	                           capped at 2 × the measured send rate
//
// The cube is concave below Rmax: R climbs fast at first, flattens as it
// nears the rate that was throttled (it regains Rmax after K seconds:
// K = 1.4 s for Rmax = 5/s, 2.9 s for 50/s), then probes above it, slowly
// and then faster, until the next throttle. Against a fixed limit L the
// rate cycles between 0.8·L and just above L; the mean over a cycle,
// (L·K − C·K⁴/4)/K, is 95 % of L for L = 50/s. (The AWS SDKs take
// β = 0.7, which backs off harder and keeps 92 %; a limiter's refusals
// cost a client little, so the higher mean is worth more here.) The measured send rate is the
// count of attempts over the last half-second bucket (or over the current
// one, when it is busier). R never falls below MinAdaptiveRate. After 10 s without
// throttling at a rate above twice what the client sends, the limiter
// switches itself off again.
//
// A call whose turn comes after its deadline returns at once, unsent, with
// a *HoldError (Paced). Waits over MaxRetryAfter are not imposed.

// MinAdaptiveRate is the lowest rate, in requests per second, the adaptive
// limiter allows a host.
const MinAdaptiveRate = 0.5

const (
	cubicBeta    = 0.8
	cubicC       = 0.4
	rateBucket   = 500 * time.Millisecond
	minMeasure   = 50 * time.Millisecond // the shortest span a send rate is measured over
	adaptiveIdle = 10 * time.Second
)

type adaptives struct {
	mu sync.Mutex
	m  map[string]*adaptive
}

// adaptive is one host's limiter. Guarded by adaptives.mu.
type adaptive struct {
	enabled  bool
	rate     float64   // R, attempts per second
	next     time.Time // the earliest turn of the next attempt
	rmax     float64
	t0       time.Time // last throttle
	k        float64
	measured float64   // smoothed send rate
	bucket   time.Time // start of the current measuring bucket
	count    float64   // attempts in the current bucket
}

// measure counts one attempt in the send-rate estimate.
func (a *adaptive) measure(now time.Time) {
	if a.bucket.IsZero() {
		a.bucket = now
	}
	if d := now.Sub(a.bucket); d >= rateBucket {
		a.measured = a.count / d.Seconds()
		a.count, a.bucket = 0, now
	}
	a.count++
}

// reserve takes a token for an attempt to host and returns its wait.
// limited is false when the host's limiter is off; such attempts are still
// measured, so that a first throttle knows the rate that met it.
func (as *adaptives) reserve(host string, now time.Time, maxWait time.Duration) (wait time.Duration, limited bool) {
	as.mu.Lock()
	defer as.mu.Unlock()
	a := as.m[host]
	if a == nil {
		// Start measuring the host's send rate, so that its first
		// throttle finds the rate that met it.
		if len(as.m) >= maxPacedHosts {
			return 0, false
		}
		if as.m == nil {
			as.m = make(map[string]*adaptive)
		}
		a = &adaptive{bucket: now}
		as.m[host] = a
	}
	a.measure(now)
	if !a.enabled {
		return 0, false
	}
	if now.Sub(a.t0) > adaptiveIdle && a.rate > 2*a.measured {
		a.enabled = false
		return 0, false
	}
	// Virtual scheduling (GCRA): turns are 1/R apart, and a change of R
	// spaces the turns after the last one given, never those before.
	slot := a.next
	if slot.Before(now) {
		slot = now
	}
	wait = slot.Sub(now)
	if wait > maxWait {
		return 0, false
	}
	a.next = slot.Add(time.Duration(float64(time.Second) / a.rate))
	return wait, true
}

// answered updates host's rate after a response to an attempt that took
// its token at sent: throttled (429, or 503 with a wait hint) or a success
// (any other response). A throttle of an attempt whose token was taken
// before the last cut is ignored: its turn was set by the rate the cut
// already answered (one cut per round, as TCP cuts once per window).
func (as *adaptives) answered(host string, throttled bool, sent, now time.Time) {
	as.mu.Lock()
	defer as.mu.Unlock()
	a := as.m[host]
	if a == nil {
		return
	}
	if throttled && a.enabled && sent.Before(a.t0) {
		return
	}
	if throttled {
		measured := a.measured
		if d := now.Sub(a.bucket); d > 0 {
			measured = math.Max(measured, a.count/math.Max(d.Seconds(), minMeasure.Seconds()))
		}
		base := measured
		if a.enabled && a.next.After(now) {
			base = a.rate // callers queue for turns: they send at R
		}
		base = math.Max(base, MinAdaptiveRate)
		a.rmax = base
		a.k = math.Cbrt(a.rmax * (1 - cubicBeta) / cubicC)
		a.rate = math.Max(cubicBeta*base, MinAdaptiveRate)
		a.t0 = now
		a.enabled = true
		return
	}
	if !a.enabled {
		return
	}
	t := now.Sub(a.t0).Seconds() - a.k
	r := cubicC*t*t*t + a.rmax
	if a.measured > 0 {
		r = math.Min(r, 2*a.measured)
	}
	a.rate = math.Max(r, MinAdaptiveRate)
}
