package budget

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of ThrottleConfig.
const (
	DefaultK              = 2.0
	DefaultThrottleWindow = 2 * time.Minute
)

// maxK caps ThrottleConfig.K; beyond it throttling could never start.
const maxK = 1e6

// ThrottleConfig configures adaptive client-side throttling. The zero value
// is the default of every field: K = 2 over a 2-minute window.
type ThrottleConfig struct {
	// K is how many requests the client sends per request the server
	// accepts before it starts rejecting locally: with K = 2 the server
	// receives about twice what it can accept, so the client notices
	// quickly when it recovers. Lower is more aggressive. Zero, negative
	// or NaN means 2.
	K float64
	// Window is how far back requests and accepts are counted. Zero or
	// negative means 2 minutes. It slides by a tenth of its length.
	Window time.Duration
	// Rand returns a uniform random number in [0, 1); the throttle rejects
	// when it is below the rejection probability. It is called
	// concurrently, without any lock held. Nil means math/rand/v2's
	// Float64. Tests supply a seeded source.
	Rand func() float64
}

// Throttle is adaptive client-side throttling as described in the Google
// SRE book's chapter "Handling Overload". It counts, over a sliding window,
// the requests the client made and those the server accepted, and rejects a
// new request locally, without sending it, with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// While the server accepts nearly everything nothing is rejected; when it
// refuses most requests (overload: 5xx, 429, network failures), the client
// sheds load itself instead of spending the server's capacity on
// rejections. Requests rejected locally count as requests too, so the
// probability keeps up with what the application wants to send.
//
// Allow asks before a request; Record reports the outcome of one that was
// sent. A request whose outcome says nothing about the server (the caller
// cancelled it) is simply not recorded.
//
// The zero value throttles with the default settings and is ready to use.
// A Throttle is safe for concurrent use.
//
//	th := budget.NewThrottle(budget.ThrottleConfig{})
//	if !th.Allow(time.Now()) {
//		return budget.ErrThrottled
//	}
//	resp, err := send()
//	th.Record(time.Now(), err == nil && resp.StatusCode < 500 && resp.StatusCode != 429)
type Throttle struct {
	rand func() float64 // fixed at construction; nil means rand.Float64

	mu sync.Mutex
	k  float64 // 0 until set up
	w  window  // a: requests, b: accepts
}

// NewThrottle returns a Throttle configured by cfg, whose zero fields take
// the defaults.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	t := &Throttle{rand: cfg.Rand}
	t.setup(cfg)
	return t
}

// setup normalises cfg's numbers into t. t.mu must be held, or t not yet
// shared.
func (t *Throttle) setup(cfg ThrottleConfig) {
	t.k = cfg.K
	if !(t.k > 0) {
		t.k = DefaultK
	}
	t.k = min(t.k, maxK)
	t.w = newWindow(durationOr(cfg.Window, DefaultThrottleWindow))
}

// RejectProbability returns the SRE book's client-side throttling
// probability, max(0, (requests − k·accepts) / (requests + 1)), for the
// given counts. It is always in [0, 1]: 0 for empty, negative or NaN
// requests; negative or NaN accepts count as none; a result that is not a
// number (NaN k, infinite counts on both sides) reads as 0, one above 1 (a
// negative k) as 1.
func RejectProbability(requests, accepts, k float64) float64 {
	if !(requests > 0) {
		return 0
	}
	if math.IsInf(requests, 1) {
		if math.IsInf(accepts, 1) {
			return 0
		}
		return 1
	}
	over := requests
	if accepts > 0 { // k·0 would be NaN for an infinite k
		over -= k * accepts
	}
	p := over / (requests + 1)
	if !(p > 0) {
		return 0
	}
	return min(p, 1)
}

// Allow reports whether a request may be sent at now. When it may not, the
// rejected request is counted (as a request that was not accepted).
func (t *Throttle) Allow(now time.Time) bool {
	ok, _ := t.allow(now)
	return ok
}

// allow is Allow that also returns the rejection probability it used.
// The random number is drawn only when the probability is not zero, and
// without the lock held: Rand may be user code.
func (t *Throttle) allow(now time.Time) (bool, float64) {
	n := now.UnixNano()
	t.mu.Lock()
	if t.k == 0 {
		t.setup(ThrottleConfig{})
	}
	requests, accepts := t.w.sums(n)
	k := t.k
	t.mu.Unlock()
	p := RejectProbability(float64(requests), float64(accepts), k)
	if p == 0 || !(t.float64() < p) { // NaN from Rand allows
		return true, p
	}
	t.mu.Lock()
	t.w.add(n, 1, 0)
	t.mu.Unlock()
	return false, p
}

// Record counts a request sent at about now, and whether the server
// accepted it: answered, with a status that is not 5xx and not 429.
func (t *Throttle) Record(now time.Time, accepted bool) {
	n := now.UnixNano()
	var acc int64
	if accepted {
		acc = 1
	}
	t.mu.Lock()
	if t.k == 0 {
		t.setup(ThrottleConfig{})
	}
	t.w.add(n, 1, acc)
	t.mu.Unlock()
}

// Probability returns the probability with which Allow would reject a
// request at now.
func (t *Throttle) Probability(now time.Time) float64 {
	n := now.UnixNano()
	t.mu.Lock()
	if t.k == 0 {
		t.setup(ThrottleConfig{})
	}
	requests, accepts := t.w.sums(n)
	k := t.k
	t.mu.Unlock()
	return RejectProbability(float64(requests), float64(accepts), k)
}

// Counts returns the requests and accepts counted over the window ending
// at now.
func (t *Throttle) Counts(now time.Time) (requests, accepts int64) {
	n := now.UnixNano()
	t.mu.Lock()
	if t.k == 0 {
		t.setup(ThrottleConfig{})
	}
	requests, accepts = t.w.sums(n)
	t.mu.Unlock()
	return requests, accepts
}

// float64 draws a number in [0, 1) from the configured source.
func (t *Throttle) float64() float64 {
	if t.rand != nil {
		return t.rand()
	}
	return rand.Float64()
}
