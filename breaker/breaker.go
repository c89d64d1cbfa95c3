// Package breaker is the circuit breaker of a rebound chain: a gate
// http.RoundTripper that keeps one breaker per host and, while a host is
// failing, refuses attempts to it without touching the network.
//
// A breaker must first do no harm: a breaker that opens on a live host
// turns its error rate into an outage. So it trips only on statistically
// clear failure, it never counts backpressure as failure, and it finds a
// host that has come back within about a second.
//
// # What counts
//
// Outcomes are judged by classify.ServerHealth: network errors, 5xx
// statuses and attempts still waiting when a deadline ends them are
// failures; other statuses are successes; a response with a wait hint
// (Retry-After, RateLimit, X-RateLimit-Reset), whatever its status, says
// "alive, slow down" and is neutral (a 429 counts as a success), as are
// the caller's cancellation and a gate's refusal. Neutral outcomes neither
// trip nor close a breaker.
//
// # When it trips
//
// A closed breaker runs two of Wald's sequential probability ratio tests
// on the stream of outcomes, each a random walk on the log-likelihood
// ratio S of "the host fails at rate p1" against "at rate p0": a failure
// adds a = ln(p1/p0), a success subtracts b = ln((1-p0)/(1-p1)), and the
// breaker trips when S reaches h. Successes earn credit, down to S = -m,
// and a fresh client starts at S = 0:
//
//	test           p0     p1     a      b      h      m     trips a fresh dead host after
//	dead host      0.35   0.95   0.992  2.570  9.92   6     10 failures in a row (MinCalls)
//	degraded host  0.30   0.50   0.508  0.344  9      10    18 failures in a row
//
// (with the defaults; p0 is FailureRate, plus 0.05 for the dead-host test,
// and the degraded test's p1 is p0 + 2(1-p0)/7. Steps are kept in fixed
// point, a rounded down and b up, so the bound below holds for the
// rounded walk.)
//
// The false-trip bound. Let a host fail each call independently with
// probability p ≤ p0, and take θ > 0 with p·e^(θa) + (1-p)·e^(-θb) = 1
// (θ = 1 at p = p0, larger below). Then e^(θS) is a martingale, and by
// Ville's inequality the walk from S = 0 ever reaches h with probability
// at most e^(-θh). After the walk has sat on its floor -m it must climb
// h + m, with probability at most e^(-θ(h+m)) from each of at most n
// floor visits in n calls. So a fresh client trips within n calls with
// probability at most
//
//	Σ over both tests  e^(-θh) · (1 + n·e^(-θm))
//
// which for a busy host failing 30 % of calls and n = 1,000 is
// 1.5·10⁻⁵ + 7.5·10⁻⁵ = 9.0·10⁻⁵ (below 10⁻⁴), and at 20 % 1.3·10⁻⁷. The
// simulation in sim_test.go measures the rates (docs/breaker.md).
//
// Detection. A dead host (every call failing: refused, reset, 5xx, hung
// past its deadline) trips a fresh client at its 10th failure, and a busy
// host that was healthy until it died at its 17th (the dead-host test
// climbs from its floor, 6 + 9.92 nats). A host failing 60 % of a busy
// stream gives the degraded test a drift of +0.167 per call: by
// Hoeffding's inequality on the walk (which the floor only lifts) a fresh
// client trips within 150 calls with probability above 99 %, within 200
// above 99.97 %; the simulation measures 98 % within 100.
//
// Overlapping failures. The walks assume outcomes in the order the
// attempts were made; they are counted in the order they end. A host
// that stalls a share of its connections breaks that: concurrent callers
// all end up stalled within a few calls, and their failures arrive
// together at their deadline, long after the fast successes of attempts
// sent later, as a burst that reads like a dead host. A dead host gives no
// successes; so a Transport keeps, per host, the time of the last success
// counted, and the dead-host test skips a failure if a success was
// counted while that attempt was in flight (the degraded-host test counts
// it). Skipping failures only lowers the walk, so the bound above holds; a
// dead host, with no successes, trips as before. (Breaker.Allow's done
// carries no per-attempt state, so through it every failure counts.)
//
// Quiet hosts. Credit is forgotten after a Window (10 s) without an
// outcome, while evidence of failure is kept: a quiet host that dies trips
// after 10 failures, however far apart. No rule can do both that and meet
// the bound above for a busy host at every point of its life: a 30 %-host
// fails 10 calls in a row somewhere in 1,000 with probability about
// 1,000 × 0.7 × 0.3¹⁰ = 4·10⁻³. The credit is what tells such a run on a
// busy, mostly healthy host from a dead one; a quiet host has none, so its
// runs of 10 failures (probability 0.3¹⁰ = 6·10⁻⁶ per run start) trip it.
//
// # Open
//
// An open breaker refuses attempts with *OpenError, which matches
// classify.ErrNotSent, and lets one attempt through per OpenTimeout (1 s,
// lengthened by up to 10 % of jitter) as a probe: a dead host receives at
// most one attempt per second from a Transport, and a host that returns,
// after an outage of any length, is found by the next probe. A probe's
// success closes the breaker; its failure, a neutral outcome or no answer
// change nothing: the open time never grows. While a probe is in flight
// the breaker reads HalfOpen. A breaker that closes starts both tests
// afresh, in a new generation, so outcomes of attempts made before it
// opened are ignored and cannot reopen it.
//
// Use Transport in a chain, or alone:
//
//	client := &http.Client{Transport: breaker.NewTransport(nil, breaker.Config{})}
//
// and Breaker, with its two-step Allow, to guard anything else.
package breaker

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// State is a breaker's state. The zero value is Closed.
type State uint8

const (
	// Closed: attempts pass and their outcomes are counted.
	Closed State = iota
	// Open: attempts fail fast, but for one probe per OpenTimeout.
	Open
	// HalfOpen: open, with a probe in flight. It is not a generation of
	// its own: probes that fail change no state.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Breaker is one circuit breaker: a state machine fed with the outcomes of
// the attempts it allowed. Allow asks whether an attempt may go ahead and
// returns a function to report its outcome:
//
//	done, err := b.Allow()
//	if err != nil {
//		return err // *OpenError: fail fast
//	}
//	resp, err := send()
//	done(classify.ServerHealth(req, resp, err))
//
// Every state change starts a new generation; an outcome reported for an
// attempt allowed in an earlier generation is ignored, so a slow success
// from before a trip cannot close the breaker, and a breaker that has just
// closed starts with fresh tests: failures from before it opened cannot
// reopen it.
//
// The closed state's path, Allow and done, takes no lock and does not
// allocate: one atomic load to allow; to record, a monotonic clock read, an
// atomic load of the score word and, unless the outcome leaves it as it
// was (a success of a healthy host), one compare-and-swap. State changes
// take a per-breaker mutex.
//
// The zero value is a breaker with the default Config and an empty name.
// A Breaker is safe for concurrent use and must not be copied after first
// use.
type Breaker struct {
	cur      atomic.Pointer[gen] // the current generation; nil before first use
	lastUsed atomic.Int64        // score clock tick of the last outcome
	name     string
	set      *settings // written once, before cur is first stored

	mu    sync.Mutex // serialises state changes; guards trips
	trips int        // trips since the breaker was created

	key  hostKey // a Transport's key for the breaker, and its hash
	hash uint64

	// The URL scheme and host as written by the request that made the
	// breaker, which a Transport's memo matches a request against
	// before it computes a canonical form (see registry.forURL); gone
	// is set when the breaker leaves its registry, so that the memo
	// stops handing it out.
	wscheme, whost string
	gone           atomic.Bool
}

// gen is one generation of a breaker: a state and the data of that state.
// Its fields are fixed at creation except the atomics.
type gen struct {
	b      *Breaker
	n      uint64        // generation number, from 1
	state  State         // Closed or Open
	score  atomic.Uint64 // Closed: the trip rule's word (see score.go)
	lastOK atomic.Uint32 // Closed: when a success was last counted, in okTicks since the origin
	next   atomic.Int64  // Open: when the next probe may pass, since the origin
	probes atomic.Int32  // Open: probes in flight
	done   func(classify.Health)

	// Closed: the outcomes (and failures among them) counted since the
	// degraded-host test last stood at its floor or a silence reset it,
	// for the plain words of a trip's reason. A success at the floor
	// changes nothing, so a healthy host's callers never write them.
	// streak counts the failures since the last success.
	seen, failed, streak atomic.Uint32
	// Open: why the breaker tripped, fixed at creation.
	why trip
}

// trip is what a breaker knew when it tripped: which test tripped (1 for
// the dead-host test, 2 for the degraded-host test) and the outcomes
// counted before it (see gen.seen).
type trip struct {
	test                     int
	failed, attempts, streak int
}

// New returns a closed breaker named name (the host it guards, used in
// errors and state changes) with the settings of cfg. The Transport-only
// fields MaxHosts and Key are ignored.
func New(name string, cfg Config) *Breaker {
	return newBreaker(name, newSettings(cfg))
}

// newBreaker returns a closed breaker sharing the settings s, last used now.
func newBreaker(name string, s *settings) *Breaker {
	b := &Breaker{name: name, set: s}
	now := s.now()
	b.lastUsed.Store(int64(s.tick(now)))
	b.cur.Store(b.newGen(Closed, 1, now))
	return b
}

// Name returns the name the breaker was created with.
func (b *Breaker) Name() string { return b.name }

// load returns the current generation, creating the first one for a zero
// Breaker.
func (b *Breaker) load() *gen {
	if g := b.cur.Load(); g != nil {
		return g
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if g := b.cur.Load(); g != nil {
		return g
	}
	if b.set == nil {
		b.set = newSettings(Config{})
	}
	g := b.newGen(Closed, 1, b.set.now())
	b.cur.Store(g)
	return g
}

// newGen returns generation n in state st, starting at now (since the
// origin). Its done function is made here, once per generation, so
// reporting an outcome allocates nothing.
func (b *Breaker) newGen(st State, n uint64, now time.Duration) *gen {
	g := &gen{b: b, n: n, state: st}
	switch st {
	case Closed:
		g.score.Store(b.set.rule.fresh(b.set.tick(now)))
		g.lastOK.Store(noOK)
	case Open:
		g.next.Store(int64(now + b.set.probeGap(rand.Float64())))
	}
	g.done = func(h classify.Health) { g.b.record(g, h) }
	return g
}

// State returns the breaker's current state: HalfOpen when it is open and
// a probe is in flight.
func (b *Breaker) State() State {
	g := b.cur.Load()
	if g == nil {
		return Closed
	}
	return g.shownState()
}

// shownState is the state g reports: HalfOpen for an open generation with
// a probe in flight.
func (g *gen) shownState() State {
	if g.state == Open && g.probes.Load() > 0 {
		return HalfOpen
	}
	return g.state
}

// Allow reports whether an attempt may go ahead. If so it returns done,
// which the caller must call exactly once with the attempt's outcome
// (classify.ServerHealth of it): Unhealthy counts as a failure, Healthy as
// a success, Neutral as neither. Otherwise it returns a nil done and an
// *OpenError.
//
// While the breaker is open, one attempt per Config.OpenTimeout (plus
// jitter) passes as a probe: its success closes the breaker; its failure,
// a Neutral outcome or no answer at all leave it open until a later probe
// succeeds.
func (b *Breaker) Allow() (done func(classify.Health), err error) {
	g, err := b.allow()
	if err != nil {
		return nil, err
	}
	return g.done, nil
}

// allow is Allow returning the generation as a token for record.
func (b *Breaker) allow() (*gen, error) {
	g := b.load()
	if g.state == Closed {
		return g, nil
	}
	return b.allowOpen(g)
}

// allowOpen is allow for an open generation g: the first caller at or
// after the probe time takes it and moves it on by one probe gap.
func (b *Breaker) allowOpen(g *gen) (*gen, error) {
	s := b.set
	now := s.now()
	for {
		due := time.Duration(g.next.Load())
		if now < due {
			w := g.why
			return nil, &OpenError{Host: b.name, State: g.shownState(), RetryIn: due - now,
				DeadHost: w.test == 1, Reason: w.reason(), Failed: w.failed, Attempts: w.attempts}
		}
		if g.next.CompareAndSwap(int64(due), int64(now+s.probeGap(rand.Float64()))) {
			g.probes.Add(1)
			return g, nil
		}
	}
}

// okTick is the resolution of gen.lastOK: a success counted within okTick
// of the last one may not be told apart from it.
const okTick = 10 * time.Millisecond

// record reports the outcome h of an attempt allowed in generation g.
// Outcomes of past generations are ignored.
func (b *Breaker) record(g *gen, h classify.Health) { b.recordSince(g, h, noMark) }

// noMark is the mark of an attempt whose caller did not read one: its
// failure is taken not to overlap any success. noOK is gen.lastOK before
// the generation's first success; success times are kept below it.
const (
	noMark = math.MaxUint32
	noOK   = math.MaxUint32 - 1
)

// mark returns what recordSince needs to tell whether an attempt allowed
// in g now overlaps a success: the time of the last one counted.
func (g *gen) mark() uint32 { return g.lastOK.Load() }

// recordSince is record for an attempt whose mark, read when it was
// allowed, was since: a failure after which g has counted a newer success
// overlapped it (see rule.nextOverlapped).
func (b *Breaker) recordSince(g *gen, h classify.Health, since uint32) {
	b.recordAt(g, h, since, unread)
}

// unread is the time of an outcome whose caller read no clock: the
// breaker reads its own.
const unread = time.Duration(-1)

// recordAt is recordSince for an outcome whose time (since the settings'
// origin) the caller read as at, or unread. at is used for a success
// only; a failure is counted at a clock read of its own.
func (b *Breaker) recordAt(g *gen, h classify.Health, since uint32, at time.Duration) {
	if g == nil || b.cur.Load() != g {
		return
	}
	switch g.state {
	case Closed:
		switch h {
		case classify.Healthy:
			b.count(g, false, since, at)
		case classify.Unhealthy:
			// A failure is counted when it came back, whatever the
			// caller read: an attempt that hung for a Window must
			// find its host quiet, as the trip rule wants. Failures
			// are the rare path; the clock read costs nothing there.
			b.count(g, true, since, unread)
		}
	case Open:
		g.release()
		if h == classify.Healthy {
			if ch, ok := b.change(g, Closed, trip{}); ok {
				b.notify(ch)
			}
		}
		// A failed probe, a neutral one (a wait hint, the caller's
		// cancellation) changes nothing: the next probe is already
		// scheduled, one gap after this one went out.
	}
}

// count feeds a success or a failure to the trip rule of the closed
// generation g, and trips the breaker if the rule says so. since is the
// attempt's mark (see recordSince); at is the outcome's time, or unread
// to read the clock now.
func (b *Breaker) count(g *gen, failed bool, since uint32, at time.Duration) {
	s := b.set
	d := at
	if d < 0 {
		d = s.now()
	}
	now := s.tick(d)
	if b.lastUsed.Load() != int64(now) {
		b.lastUsed.Store(int64(now))
	}
	overlapped := false
	if failed {
		overlapped = since != noMark && g.lastOK.Load() != since
	} else if ok := uint32(uint64(d/okTick) % noOK); g.lastOK.Load() != ok {
		g.lastOK.Store(ok)
	}
	for {
		w := g.score.Load()
		nw, test := s.rule.nextOverlapped(w, failed, overlapped, now)
		if nw == w {
			return
		}
		if g.score.CompareAndSwap(w, nw) {
			t := g.tally(w, nw, failed, now)
			if test != 0 {
				t.test = test
				b.trip(g, t)
			}
			return
		}
	}
}

// tally counts an outcome that moved g's score word from w to nw into
// g's episode counts, and returns them: an episode ends when the
// degraded-host test reaches its floor, and a silence that resets the
// test starts a new one.
func (g *gen) tally(w, nw uint64, failed bool, now uint32) trip {
	_, _, last := unpack(w)
	if int32(now-last) >= quietUnits {
		g.seen.Store(0)
		g.failed.Store(0)
	}
	if _, degraded, _ := unpack(nw); degraded == 0 {
		if g.streak.Load() != 0 && !failed {
			g.streak.Store(0)
		}
		if g.seen.Load() != 0 {
			g.seen.Store(0)
		}
		if g.failed.Load() != 0 {
			g.failed.Store(0)
		}
		if !failed {
			return trip{}
		}
	}
	t := trip{attempts: int(g.seen.Add(1))}
	if failed {
		t.failed = int(g.failed.Add(1))
		t.streak = int(g.streak.Add(1))
	} else {
		t.failed = int(g.failed.Load())
		if g.streak.Load() != 0 {
			g.streak.Store(0)
		}
	}
	return t
}

// release frees a probe slot, never going below zero.
func (g *gen) release() {
	for {
		p := g.probes.Load()
		if p <= 0 || g.probes.CompareAndSwap(p, p-1) {
			return
		}
	}
}

// trip opens the breaker from generation g, if g is still current, and
// reports the change.
func (b *Breaker) trip(g *gen, t trip) {
	if ch, ok := b.change(g, Open, t); ok {
		b.notify(ch)
	}
}

// change replaces generation g, if it is still current, by a new one in
// state to, and returns the change to report; ok is false when g was no
// longer current.
func (b *Breaker) change(g *gen, to State, t trip) (ch StateChange, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != g {
		return StateChange{}, false
	}
	now := b.set.now()
	ng := b.newGen(to, g.n+1, now)
	ng.why = t
	from := g.state
	ch = StateChange{Host: b.name, From: from, To: to, Reason: reasonProbe, Generation: ng.n}
	switch to {
	case Open:
		b.trips++
		ch.Reason = t.reason()
		ch.DeadHost = t.test == 1
		ch.Failed, ch.Attempts = t.failed, t.attempts
		ch.OpenFor = time.Duration(ng.next.Load()) - now
	case Closed:
		ch.From = HalfOpen // a probe was in flight: its success closes
	}
	b.cur.Store(ng)
	return ch, true
}

// notify calls the state-change hook. Callers hold no lock.
func (b *Breaker) notify(ch StateChange) {
	if f := b.set.onChange; f != nil {
		f(ch)
	}
}

// Snapshot returns the breaker's current state and counts.
func (b *Breaker) Snapshot() HostState {
	g := b.load()
	b.mu.Lock()
	trips := b.trips
	b.mu.Unlock()
	s := b.set
	hs := HostState{
		Host:       b.name,
		State:      g.shownState(),
		Generation: g.n,
		Trips:      trips,
		LastUsed:   s.origin.Add(time.Duration(b.lastUsed.Load()) * s.unit),
	}
	switch g.state {
	case Closed:
		hs.Evidence = s.rule.evidence(g.score.Load())
	case Open:
		hs.RetryIn = max(time.Duration(g.next.Load())-s.now(), 0)
		hs.ProbesInFlight = int(g.probes.Load())
	}
	return hs
}

// evictable ranks the breaker for eviction at now (since the origin): 0
// for closed, 1 for an open breaker with no probe in flight whose next
// probe is due, and -1 when it must not be evicted.
func (b *Breaker) evictable(now time.Duration) int {
	g := b.cur.Load()
	switch {
	case g == nil || g.state == Closed:
		return 0
	case g.probes.Load() == 0 && now >= time.Duration(g.next.Load()):
		return 1
	}
	return -1
}
