// Package breaker is the circuit breaker of a rebound chain: a gate
// http.RoundTripper that keeps one breaker per host and, while a host is
// failing, refuses attempts to it without touching the network.
//
// Each breaker is closed, open or half-open. Closed, it counts successes
// and failures (per classify.ServerHealth: network errors and 5xx fail,
// every other status succeeds, the caller's cancellation counts as
// neither) in a sliding time window, and trips open on a high failure rate
// or, for a quiet host, on a run of consecutive failures (see Config).
// Open, it refuses attempts with *OpenError, which matches
// classify.ErrNotSent, for an open time that doubles on repeated trips.
// Then it turns half-open and lets a bounded number of probes through: a
// success closes it, a failure reopens it, and so does a probe left
// unanswered for the longest open time.
//
// Use Transport in a chain, or alone:
//
//	client := &http.Client{Transport: breaker.NewTransport(nil, breaker.Config{})}
//
// and Breaker, with its two-step Allow, to guard anything else.
package breaker

import (
	"fmt"
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
	// Open: attempts fail fast until the open time has passed.
	Open
	// HalfOpen: a bounded number of probes pass; the rest fail fast.
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
// from before a trip cannot close the breaker.
//
// The closed state's path, Allow and done, takes no lock and does not
// allocate: one atomic load to allow, a clock read and a compare-and-swap
// on a window bucket to record. State changes take a per-breaker mutex.
//
// The zero value is a breaker with the default Config and an empty name.
// A Breaker is safe for concurrent use and must not be copied after first
// use.
type Breaker struct {
	cur      atomic.Pointer[gen] // the current generation; nil before first use
	lastUsed atomic.Int64        // window bucket index of the last outcome
	name     string
	set      *settings // written once, before cur is first stored

	mu    sync.Mutex // serialises state changes; guards trips
	trips int        // trips since the breaker last closed

	key  hostKey // a Transport's key for the breaker, and its hash
	hash uint64
}

// gen is one generation of a breaker: a state and the data of that state.
// Its fields are fixed at creation except the atomics.
type gen struct {
	b       *Breaker
	n       uint64 // generation number, from 1
	state   State
	until   time.Time     // Open: when the first probe may pass; HalfOpen: when probes are overdue
	openFor time.Duration // Open: the open time chosen at the trip
	probes  atomic.Int32  // HalfOpen: probes in flight
	consec  atomic.Int64  // Closed: failures in a row
	win     window        // Closed: the sliding window; empty otherwise
	done    func(classify.Health)
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
	b.lastUsed.Store(int64(s.index()))
	b.cur.Store(b.newGen(Closed, 1))
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
	g := b.newGen(Closed, 1)
	b.cur.Store(g)
	return g
}

// newGen returns generation n in state st. Its done function is made here,
// once per generation, so reporting an outcome allocates nothing.
func (b *Breaker) newGen(st State, n uint64) *gen {
	g := &gen{b: b, n: n, state: st}
	if st == Closed {
		g.win = newWindow(b.set.buckets)
	}
	g.done = func(h classify.Health) { g.b.record(g, h, 0) }
	return g
}

// State returns the breaker's current state. An open breaker whose open
// time has passed still reads Open until an attempt turns it half-open.
func (b *Breaker) State() State {
	if g := b.cur.Load(); g != nil {
		return g.state
	}
	return Closed
}

// Allow reports whether an attempt may go ahead. If so it returns done,
// which the caller must call exactly once with the attempt's outcome
// (classify.ServerHealth of it): Unhealthy counts as a failure, Healthy as
// a success, Neutral as neither (it only frees a half-open probe slot).
// Otherwise it returns a nil done and an *OpenError.
//
// In the open state, the first call after the open time turns the breaker
// half-open and is its first probe.
//
// done cannot pass a server's Retry-After; Transport, which sees the
// response, lets a 503's Retry-After lengthen the open time.
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
	return b.allowSlow(g)
}

// allowSlow is allow for the open and half-open states.
func (b *Breaker) allowSlow(g *gen) (*gen, error) {
	for {
		switch g.state {
		case Closed:
			return g, nil
		case Open:
			now := time.Now()
			if now.Before(g.until) {
				return nil, &OpenError{Host: b.name, State: Open, RetryIn: g.until.Sub(now)}
			}
			if ng, ch, ok := b.change(g, HalfOpen, "open time elapsed", 0, now); ok {
				b.notifyProbing(ng, ch)
				return ng, nil
			}
		case HalfOpen:
			if g.probes.Add(1) <= b.set.probes {
				return g, nil
			}
			g.release()
			now := time.Now()
			if now.Before(g.until) {
				return nil, &OpenError{Host: b.name, State: HalfOpen}
			}
			// The probes have been out for longer than the breaker ever
			// stays open: a server that does not answer a caller without
			// a deadline, or a caller that never reported. Reopen rather
			// than wait for ever; their outcomes, if they come, belong to
			// a past generation.
			b.trip(g, "probe unanswered after "+b.set.maxOpen.String(), 0, now)
		}
		g = b.cur.Load() // another goroutine changed the state first
	}
}

// release frees a half-open probe slot, never going below zero.
func (g *gen) release() {
	for {
		p := g.probes.Load()
		if p <= 0 || g.probes.CompareAndSwap(p, p-1) {
			return
		}
	}
}

// record reports the outcome h of an attempt allowed in generation g.
// hint is a server's Retry-After, which may lengthen the open time if the
// outcome trips the breaker. Outcomes of past generations are ignored.
func (b *Breaker) record(g *gen, h classify.Health, hint time.Duration) {
	if g == nil || b.cur.Load() != g {
		return
	}
	idx := b.set.index()
	if b.lastUsed.Load() != int64(idx) {
		b.lastUsed.Store(int64(idx))
	}
	switch g.state {
	case Closed:
		if h == classify.Neutral {
			return
		}
		failed := h == classify.Unhealthy
		g.win.add(idx, failed)
		if !failed {
			if g.consec.Load() != 0 {
				g.consec.Store(0)
			}
			return
		}
		if reason := b.tripReason(g, idx); reason != "" {
			b.trip(g, reason, hint, time.Now())
		}
	case HalfOpen:
		switch h {
		case classify.Neutral:
			g.release()
		case classify.Healthy:
			if _, ch, ok := b.change(g, Closed, "probe succeeded", 0, time.Now()); ok {
				b.notify(ch)
			}
		default:
			b.trip(g, "probe failed", hint, time.Now())
		}
	}
}

// tripReason counts a failure in the closed generation g, whose window ends
// at bucket idx, and says why the breaker must trip, or "" if it need not.
func (b *Breaker) tripReason(g *gen, idx uint64) string {
	run := g.consec.Add(1)
	calls, fails := g.win.sum(idx)
	s := b.set
	if calls >= s.minCalls {
		if float64(fails) >= s.rate*float64(calls) {
			return fmt.Sprintf("failure rate %d%% of %d calls", fails*100/calls, calls)
		}
		return ""
	}
	if s.consecutive > 0 && run >= s.consecutive {
		return fmt.Sprintf("%d consecutive failures", run)
	}
	return ""
}

// trip opens the breaker from generation g, if g is still current, and
// reports the change.
func (b *Breaker) trip(g *gen, reason string, hint time.Duration, now time.Time) {
	if _, ch, ok := b.change(g, Open, reason, hint, now); ok {
		b.notify(ch)
	}
}

// change replaces generation g, if it is still current, by a new one in
// state to, and returns it with the change to report; ok is false when g
// was no longer current. For Open, hint may lengthen the open time; for
// HalfOpen, the caller holds the new generation's first probe slot.
func (b *Breaker) change(g *gen, to State, reason string, hint time.Duration, now time.Time) (ng *gen, ch StateChange, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != g {
		return nil, StateChange{}, false
	}
	ng = b.newGen(to, g.n+1)
	s := b.set
	switch to {
	case Open:
		b.trips++
		d := openDuration(b.trips, s.base, s.maxOpen, s.jitter, rand.Float64())
		ng.openFor = lengthen(d, hint, s.maxOpen)
		ng.until = now.Add(ng.openFor)
		if ng.openFor > d {
			reason += ", Retry-After " + hint.String()
		}
	case HalfOpen:
		ng.probes.Store(1)
		ng.until = now.Add(s.maxOpen)
	case Closed:
		b.trips = 0
	}
	b.cur.Store(ng)
	return ng, StateChange{
		Host:       b.name,
		From:       g.state,
		To:         to,
		Reason:     reason,
		Generation: ng.n,
		OpenFor:    ng.openFor,
	}, true
}

// notifyProbing reports the change to half-open ch, whose first probe slot
// in ng the caller holds. If the hook panics, the probe will not be sent:
// its slot is freed before the panic goes on, or the breaker would wait
// for it for as long as the open time.
func (b *Breaker) notifyProbing(ng *gen, ch StateChange) {
	ok := false
	defer func() {
		if !ok {
			ng.release()
		}
	}()
	b.notify(ch)
	ok = true
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
	now := time.Now()
	hs := HostState{
		Host:       b.name,
		State:      g.state,
		Generation: g.n,
		Trips:      trips,
		LastUsed:   b.set.origin.Add(time.Duration(b.lastUsed.Load()) * b.set.width),
	}
	switch g.state {
	case Closed:
		hs.Calls, hs.Failures = g.win.sum(b.set.index())
		hs.ConsecutiveFailures = g.consec.Load()
	case Open:
		hs.RetryIn = max(g.until.Sub(now), 0)
	case HalfOpen:
		hs.ProbesInFlight = int(g.probes.Load())
	}
	return hs
}

// evictable ranks the breaker for eviction at time now: 0 for closed, 1
// for an open breaker whose open time has passed or a half-open one with
// no probe in flight, and -1 when it must not be evicted.
func (b *Breaker) evictable(now time.Time) int {
	g := b.cur.Load()
	switch {
	case g == nil || g.state == Closed:
		return 0
	case g.state == Open && !now.Before(g.until),
		g.state == HalfOpen && g.probes.Load() == 0:
		return 1
	}
	return -1
}
