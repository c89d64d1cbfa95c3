package breaker

import (
	"net/http"
	"time"
)

// Defaults applied by New and NewTransport to the zero fields of a Config.
const (
	DefaultWindow      = 10 * time.Second
	DefaultMinCalls    = 10
	DefaultFailureRate = 0.3
	DefaultOpenTimeout = time.Second
	DefaultJitter      = 0.1
	DefaultMaxHosts    = 10_000
)

// Bounds of the trip rule's settings (see Config).
const (
	minFailureRate = 0.01
	maxFailureRate = 0.8
	maxMinCalls    = 100
	minWindow      = time.Millisecond
)

// Config configures a Breaker, or every breaker of a Transport. The zero
// value is the documented default of every field; New and NewTransport
// normalise a copy and never modify the caller's.
//
// The trip rule (two sequential tests, see the package doc) is set by
// FailureRate, the share of failures a host may have without tripping,
// and MinCalls, the run of failures that trips a fresh or quiet host; its
// other constants follow from the false-trip bound. The open state is set
// by OpenTimeout and Jitter: one probe per OpenTimeout, whatever happened
// before.
type Config struct {
	// Window is how long a host may go without an outcome before the
	// breaker forgets the credit its successes earned: after a silence of
	// about a Window (between 15/16 and 17/16 of it) the host is judged
	// as a fresh one, so a quiet host that dies trips after MinCalls
	// failures. Evidence of failure is kept across silences. Zero or
	// negative means 10 s; at least 1 ms.
	Window time.Duration
	// MinCalls is the fewest calls that can trip the breaker: a fresh or
	// quiet host trips after MinCalls failures in a row (a busy host that
	// was healthy until it died takes up to MinCalls+7 with the defaults,
	// a few milliseconds). Fewer raise the false-trip odds (a host failing
	// FailureRate of its calls fails MinCalls in a row with probability
	// FailureRate^MinCalls). Zero or negative means 10; at most 100.
	MinCalls int
	// FailureRate is the share of failed calls the breaker tolerates: a
	// busy host failing at most this share trips a fresh client within its
	// first 1,000 calls with probability below 10⁻⁴ with the defaults (see
	// the package doc). Zero, negative or NaN means 0.3; it is kept within
	// [0.01, 0.8].
	FailureRate float64

	// OpenTimeout is the time between probes while the breaker is open:
	// the first probe passes OpenTimeout after the trip, and the next one
	// OpenTimeout after each probe, whatever became of it (failed, still
	// in flight or neutral), so a dead host receives one attempt per
	// OpenTimeout and a host that returns is found within about one.
	// Other attempts fail fast with *OpenError. Zero or negative means
	// 1 s.
	OpenTimeout time.Duration
	// Jitter lengthens each time between probes by a random share in
	// [0, Jitter), so a fleet of clients does not probe a server in
	// lockstep; it never shortens it. Zero means 0.1; negative disables
	// jitter; above 1 means 1.
	Jitter float64

	// MaxHosts bounds how many hosts a Transport tracks (a Breaker ignores
	// it). At the bound, a new host takes the place of an idle closed
	// breaker, the least recently used of a small sample (approximate LRU,
	// as Redis evicts), or else of an open breaker with no probe in flight
	// whose next probe is due. Other open breakers are never evicted: when
	// every tracked host is open, a new host's attempts pass through
	// untracked (see Transport.Untracked). Zero or negative means 10,000.
	MaxHosts int
	// Key, when non-nil, names the breaker of a request for a Transport
	// (a Breaker ignores it); an empty key sends the request through
	// untracked. Nil means the URL's host in canonical form: lower case,
	// no trailing dot, IDNA A-label, IPv6 in brackets, without a default
	// port (":80" for http, ":443" for https), so "https://API.example.com.:443"
	// and "https://api.example.com" share a breaker; it costs no allocation
	// for a host already in that form. Key must be safe for
	// concurrent use and should not allocate, as it runs on every attempt.
	Key func(*http.Request) string

	// OnStateChange, when non-nil, is called after every state change with
	// its host, states and reason. It is never called with a lock held, so
	// it may read the breaker or the Transport; it runs on the goroutine
	// that caused the change, so it may run concurrently and changes of one
	// host may arrive out of order (use StateChange.Generation to order
	// them). It should return quickly.
	OnStateChange func(StateChange)
}

// settings is a normalised Config shared by the breakers of a Transport.
// It is never modified after newSettings returns.
type settings struct {
	window   time.Duration
	unit     time.Duration // window / quietUnits: the score word's clock tick
	minCalls int
	rate     float64
	rule     rule
	interval time.Duration
	jitter   float64
	maxHosts int
	key      func(*http.Request) string
	onChange func(StateChange)
	origin   time.Time // the zero of the breakers' clocks
}

// newSettings normalises c. It reads the clock once, for the origin of the
// breakers' clocks.
func newSettings(c Config) *settings {
	s := &settings{
		window:   c.Window,
		minCalls: c.MinCalls,
		rate:     c.FailureRate,
		interval: c.OpenTimeout,
		jitter:   c.Jitter,
		maxHosts: c.MaxHosts,
		key:      c.Key,
		onChange: c.OnStateChange,
		origin:   time.Now(),
	}
	if s.window <= 0 {
		s.window = DefaultWindow
	}
	s.window = max(s.window, minWindow)
	s.unit = s.window / quietUnits
	if s.minCalls <= 0 {
		s.minCalls = DefaultMinCalls
	}
	s.minCalls = min(s.minCalls, maxMinCalls)
	switch {
	case s.rate <= 0 || s.rate != s.rate: // NaN too
		s.rate = DefaultFailureRate
	case s.rate < minFailureRate:
		s.rate = minFailureRate
	case s.rate > maxFailureRate:
		s.rate = maxFailureRate
	}
	s.rule = newRule(s.rate, s.minCalls)
	if s.interval <= 0 {
		s.interval = DefaultOpenTimeout
	}
	switch {
	case s.jitter == 0:
		s.jitter = DefaultJitter
	case s.jitter < 0 || s.jitter != s.jitter:
		s.jitter = 0
	case s.jitter > 1:
		s.jitter = 1
	}
	if s.maxHosts <= 0 {
		s.maxHosts = DefaultMaxHosts
	}
	return s
}

// now returns the time since the settings' origin, from the monotonic
// clock (time.Since reads only that, half the cost of time.Now).
func (s *settings) now() time.Duration {
	return max(time.Since(s.origin), 0)
}

// tick returns the score word's clock at d since the origin.
func (s *settings) tick(d time.Duration) uint32 {
	return uint32(d / s.unit)
}

// probeGap returns the time from one probe to the next: OpenTimeout
// lengthened by the share jitter·r, where r is a random number in [0, 1).
func (s *settings) probeGap(r float64) time.Duration {
	return s.interval + time.Duration(float64(s.interval)*s.jitter*r)
}
