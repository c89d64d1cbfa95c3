package breaker

import (
	"net/http"
	"time"
)

// Defaults applied by New and NewTransport to the zero fields of a Config.
const (
	DefaultWindow              = 10 * time.Second
	DefaultBuckets             = 10
	DefaultMinCalls            = 20
	DefaultFailureRate         = 0.5
	DefaultConsecutiveFailures = 5
	DefaultOpenTimeout         = 5 * time.Second
	DefaultMaxOpenTimeout      = 60 * time.Second
	DefaultJitter              = 0.1
	DefaultHalfOpenProbes      = 1
	DefaultMaxHosts            = 10_000
)

// maxBuckets bounds Config.Buckets, and so the memory of one breaker.
const maxBuckets = 1000

// Config configures a Breaker, or every breaker of a Transport. The zero
// value is the documented default of every field; New and NewTransport
// normalise a copy and never modify the caller's.
//
// A closed breaker trips on either of two rules, checked after each failure:
//
//   - the failure rate: the window holds at least MinCalls calls and at
//     least FailureRate of them failed;
//   - for a quiet host only, whose window holds fewer than MinCalls calls:
//     ConsecutiveFailures failures in a row.
//
// A busy host is judged by its rate alone, because at thousands of calls a
// second a run of five failures happens every few seconds by chance on a
// server that fails only 10% of calls.
type Config struct {
	// Window is how far back the failure rate looks. It is kept in Buckets
	// time buckets and slides one bucket at a time, so it covers between
	// Window·(Buckets-1)/Buckets and Window of history. Zero or negative
	// means 10 s.
	Window time.Duration
	// Buckets is the number of time buckets of the window. Memory per
	// breaker grows by 8 bytes per bucket. Zero or negative means 10 (1 s
	// each with the default window); at most 1000, and at most one bucket
	// per nanosecond of Window.
	Buckets int
	// MinCalls is how many calls (successes and failures; neutral outcomes
	// are not counted) the window must hold before the failure rate is
	// judged. Zero or negative means 20.
	MinCalls int
	// FailureRate is the share of failed calls, in (0, 1], at or above
	// which a window of at least MinCalls calls trips the breaker. Zero or
	// negative means 0.5; above 1 means 1.
	FailureRate float64
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row while the window holds fewer than MinCalls calls. Zero means 5;
	// negative disables the rule.
	ConsecutiveFailures int

	// OpenTimeout is how long the breaker stays open after a trip from the
	// closed state; while open, attempts fail fast with *OpenError. Zero or
	// negative means 5 s.
	OpenTimeout time.Duration
	// MaxOpenTimeout caps the open time, which doubles on each trip that
	// follows a failed probe and on a 503's Retry-After. Zero or negative
	// means 60 s; less than OpenTimeout means OpenTimeout.
	MaxOpenTimeout time.Duration
	// Jitter shortens each open time by a random share in [0, Jitter), so
	// a fleet of clients does not probe a server in lockstep. Zero means
	// 0.1; negative disables jitter; above 0.5 means 0.5.
	Jitter float64
	// HalfOpenProbes is how many attempts may be in flight at once while
	// the breaker is half-open; the rest fail fast. The first success
	// closes the breaker, the first failure reopens it. A breaker whose
	// probes have all been in flight for MaxOpenTimeout (a server that
	// never answers a caller without a deadline) reopens at the next
	// attempt, and the late outcomes of those probes are ignored. Zero or
	// negative means 1.
	HalfOpenProbes int

	// MaxHosts bounds how many hosts a Transport tracks (a Breaker ignores
	// it). At the bound, a new host takes the place of an idle closed
	// breaker, the least recently used of a small sample (approximate LRU,
	// as Redis evicts), or else of an open breaker whose open time has
	// passed or a half-open one with no probe in flight. Open and probing
	// breakers are never evicted: when every tracked host is open, a new
	// host's attempts pass through untracked (see Transport.Untracked).
	// Zero or negative means 10,000.
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
	window      time.Duration
	buckets     int
	width       time.Duration // window / buckets
	minCalls    int64
	rate        float64
	consecutive int64 // 0 disables the rule
	base        time.Duration
	maxOpen     time.Duration
	jitter      float64
	probes      int32
	maxHosts    int
	key         func(*http.Request) string
	onChange    func(StateChange)
	origin      time.Time // the zero of bucket indexes
}

// newSettings normalises c. It reads the clock once, for the origin of the
// window's bucket indexes.
func newSettings(c Config) *settings {
	s := &settings{
		window:   c.Window,
		buckets:  c.Buckets,
		minCalls: int64(c.MinCalls),
		rate:     c.FailureRate,
		base:     c.OpenTimeout,
		maxOpen:  c.MaxOpenTimeout,
		jitter:   c.Jitter,
		probes:   int32(min(c.HalfOpenProbes, 1<<20)),
		maxHosts: c.MaxHosts,
		key:      c.Key,
		onChange: c.OnStateChange,
		origin:   time.Now(),
	}
	if s.window <= 0 {
		s.window = DefaultWindow
	}
	if s.buckets <= 0 {
		s.buckets = DefaultBuckets
	}
	s.buckets = min(s.buckets, maxBuckets)
	if int64(s.buckets) > int64(s.window) {
		s.buckets = int(s.window)
	}
	s.width = s.window / time.Duration(s.buckets)
	if s.minCalls <= 0 {
		s.minCalls = DefaultMinCalls
	}
	switch {
	case s.rate <= 0 || s.rate != s.rate: // NaN too
		s.rate = DefaultFailureRate
	case s.rate > 1:
		s.rate = 1
	}
	switch {
	case c.ConsecutiveFailures == 0:
		s.consecutive = DefaultConsecutiveFailures
	case c.ConsecutiveFailures > 0:
		s.consecutive = int64(c.ConsecutiveFailures)
	}
	if s.base <= 0 {
		s.base = DefaultOpenTimeout
	}
	if s.maxOpen <= 0 {
		s.maxOpen = DefaultMaxOpenTimeout
	}
	s.maxOpen = max(s.maxOpen, s.base)
	switch {
	case s.jitter == 0:
		s.jitter = DefaultJitter
	case s.jitter < 0 || s.jitter != s.jitter:
		s.jitter = 0
	case s.jitter > 0.5:
		s.jitter = 0.5
	}
	if s.probes <= 0 {
		s.probes = DefaultHalfOpenProbes
	}
	if s.maxHosts <= 0 {
		s.maxHosts = DefaultMaxHosts
	}
	return s
}

// index returns the number of the window bucket that the present falls in,
// counted from the settings' origin. time.Since reads only the monotonic
// clock, half the cost of time.Now.
func (s *settings) index() uint64 {
	d := time.Since(s.origin)
	if d < 0 {
		return 0
	}
	return uint64(d / s.width)
}

// openDuration returns how long a breaker stays open after its trips-th
// consecutive trip (1 for a trip from the closed state): base doubled for
// each trip after the first, capped at max, then shortened by the share
// jitter·r, where r is a random number in [0, 1).
func openDuration(trips int, base, max time.Duration, jitter, r float64) time.Duration {
	d := base
	for i := 1; i < trips && d < max; i++ {
		if d > max/2 {
			d = max
			break
		}
		d *= 2
	}
	d = min(d, max)
	return d - time.Duration(float64(d)*jitter*r)
}

// lengthen returns the open time d lengthened to a server's Retry-After
// hint, when the hint is longer, but never beyond max.
func lengthen(d, hint, max time.Duration) time.Duration {
	if hint > d {
		return min(hint, max)
	}
	return d
}
