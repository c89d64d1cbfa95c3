package rebound

import (
	"maps"
	"math/bits"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// MaxStatsHosts is the number of hosts a Transport counts on their own in
// Stats: the first hosts it sees. The calls of every further host are
// counted together under OtherHost, so the cardinality of metrics built
// on Stats is bounded.
const MaxStatsHosts = 256

// OtherHost is the Host of Stats.Other, the bucket of the hosts beyond
// MaxStatsHosts. No URL host is spelled with parentheses, so it cannot be
// mistaken for one.
const OtherHost = "(other)"

// Gates that refuse an attempt before it is sent, the keys of
// HostStats.Refusals.
const (
	// GateBreaker: an open circuit breaker (breaker.ErrOpen).
	GateBreaker = "breaker"
	// GateBudget: the retry budget or the client-side throttle
	// (budget.ErrExhausted, budget.ErrThrottled).
	GateBudget = "budget"
	// GateHint: the host's admission is paused by the server's wait hint
	// past the call's deadline (admission.ErrHint).
	GateHint = "server_hint"
	// GateQuota: the server's announced quota gives the call no turn
	// before its deadline (admission.ErrQuota).
	GateQuota = "server_quota"
	// GatePace: rebound's own pace, learned from the server's throttling,
	// gives the call no turn before its deadline (admission.ErrPace).
	GatePace = "adaptive_pace"
	// GateHold is the name refusals by the host's admission had before it
	// told its three causes apart; nothing is counted under it.
	//
	// Deprecated: use GateHint, GateQuota and GatePace.
	GateHold = "hold"
	// GateIsolated: the host is isolated by an operator (Transport.Isolate,
	// ErrIsolated).
	GateIsolated = "isolated"
	// GateOther: any other inner link whose error matches
	// classify.ErrNotSent.
	GateOther = "gate"
)

// maxReasons bounds the retry reasons counted on their own per host
// (classify's reasons and those of a decision hook); further reasons are
// counted under OtherReason.
const maxReasons = 32

// OtherReason is the key of HostStats.Retries that counts the retries of
// reasons beyond the first 32 of a host.
const OtherReason = "other"

// Stats is a snapshot of a Transport's counters, for metrics (see
// Transport.Stats). Counters only grow, from the Transport's creation;
// Breaker, OpenBreakers and RetryBalance are read at the time of the
// snapshot. The zero value is the Stats of a Transport that has seen
// nothing.
type Stats struct {
	// Total sums every host, Other included. Its Breaker and RetryBalance
	// are zero.
	Total HostStats
	// Hosts holds the hosts counted on their own (at most MaxStatsHosts),
	// sorted by Host.
	Hosts []HostStats
	// Other counts the hosts beyond MaxStatsHosts together; its Host is
	// OtherHost. Its Breaker and RetryBalance are zero.
	Other HostStats
	// OpenBreakers is the number of hosts, of every policy, whose circuit
	// breaker is open or half-open now.
	OpenBreakers int
}

// HostStats is the counters of one host (or of all, or of the hosts beyond
// the bound: see Stats). The zero value counts nothing.
type HostStats struct {
	// Host is the canonical URL host ("api.example.com",
	// "127.0.0.1:8080"), the form Breakers and RetryBalance use; "" in
	// Stats.Total, OtherHost in Stats.Other. It is always valid UTF-8
	// without control characters, and at most 300 bytes, so any log,
	// label or attribute can carry it: bytes a URL parser let through (in
	// an IPv6 zone) are written \xhh, and a longer host is cut and ends
	// with a hash of the whole.
	Host string
	// Calls is the number of requests the Transport was given.
	Calls uint64
	// Attempts is the number of attempts sent, past every gate: a call
	// that succeeds at once is one attempt, one whose first attempt a gate
	// refused is none.
	Attempts uint64
	// Retries counts the retries the loop scheduled, by the reason the
	// previous attempt failed (classify.Reason*, or a decision hook's
	// reason; see OtherReason). A scheduled retry that a gate then refuses
	// is counted here and in Refusals. Nil when there are none.
	Retries map[string]uint64
	// GiveUps counts the calls that ended on a failure, by why the loop
	// stopped (transport.Stop*: attempts exhausted, refused by gate ...).
	// A final 4xx response is not counted: the server answered, and the
	// caller has its response. Nil when there are none.
	GiveUps map[string]uint64
	// Refusals counts the calls ended by a gate's refusal, by gate
	// (GateBreaker, GateBudget, GateHint, GateQuota, GatePace,
	// GateIsolated, GateOther);
	// each is also a
	// give-up, under transport.StopRefused or transport.StopHeld. Nil when
	// there are none.
	Refusals map[string]uint64
	// Hedges is the number of hedged attempts sent (transport.Config.Hedge);
	// each is also counted in Attempts.
	Hedges uint64
	// KeysGenerated is the number of Idempotency-Keys the chain generated
	// (keys the caller set or gave with idempotency.WithKey are not
	// counted).
	KeysGenerated uint64
	// BreakerTrips is the number of times the host's circuit breaker
	// opened.
	BreakerTrips uint64
	// Breaker is the state of the host's circuit breaker now: Closed when
	// the host has none (breakers disabled, or the host not tracked).
	Breaker breaker.State
	// RetryBalance is the retries the budget serving the host would allow
	// now (see Transport.RetryBalance); 0 when the host's policy has no
	// budget.
	RetryBalance float64
	// HasBudget reports whether the host's policy has a retry budget:
	// false when it is disabled (and in Stats.Total and Stats.Other).
	HasBudget bool
}

// Stats returns a snapshot of the Transport's counters: the totals, each
// host's (the first MaxStatsHosts hosts seen) and the other hosts'
// together, with the state of the circuit breakers and retry budgets. It is
// safe to call concurrently with requests; counts made while it runs may
// or may not be in it. Counting is always on, unless New was given
// WithoutStats, in which case Stats is empty. It costs the healthy call
// no allocation and a few nanoseconds (see the README).
func (t *Transport) Stats() Stats {
	var s Stats
	breakers := t.Breakers()
	for _, h := range breakers {
		if h.State != breaker.Closed {
			s.OpenBreakers++
		}
	}
	if t.stats == nil {
		return s
	}
	states := make(map[string]breaker.State, len(breakers))
	for _, h := range breakers {
		states[h.Host] = h.State
	}
	for _, c := range t.stats.index.Load().canon {
		h := c.snapshot()
		h.Breaker = states[h.Host]
		h.RetryBalance, h.HasBudget = t.RetryBalance(h.Host)
		s.Hosts = append(s.Hosts, h)
		s.Total.add(&h)
	}
	slices.SortFunc(s.Hosts, func(a, b HostStats) int { return strings.Compare(a.Host, b.Host) })
	s.Other = t.stats.other.snapshot()
	s.Total.add(&s.Other)
	return s
}

// WithoutStats turns the counters behind Transport.Stats off, saving the
// few nanoseconds they cost each call; Stats then reports only
// OpenBreakers.
func WithoutStats() Option {
	return func(o *options) { o.noStats = true }
}

// add adds h's counters to s.
func (s *HostStats) add(h *HostStats) {
	s.Calls += h.Calls
	s.Attempts += h.Attempts
	s.Hedges += h.Hedges
	s.KeysGenerated += h.KeysGenerated
	s.BreakerTrips += h.BreakerTrips
	s.Retries = addCounts(s.Retries, h.Retries)
	s.GiveUps = addCounts(s.GiveUps, h.GiveUps)
	s.Refusals = addCounts(s.Refusals, h.Refusals)
}

func addCounts(dst, src map[string]uint64) map[string]uint64 {
	for k, v := range src {
		if dst == nil {
			dst = make(map[string]uint64, len(src))
		}
		dst[k] += v
	}
	return dst
}

// statsTable holds one Transport's counters. A host's counters are found
// through an index that is replaced, never modified, when a host or a new
// spelling of one is added, so a lookup is one atomic load and one map
// read of the URL's host as written: no canonical form is computed for a
// spelling seen before. The counters of a host are spread over shards,
// each on cache lines of its own, and an increment goes to a random
// shard, so concurrent calls to one host rarely write the same line (a
// single shared counter would cost every call on a many-core machine a
// contended cache line).
type statsTable struct {
	shards int  // a power of two
	shift  uint // 64 - log2(shards): a hash's top bits pick a shard
	index  atomic.Pointer[hostIndex]
	mu     sync.Mutex // serialises additions to the index
	other  *hostCount
}

// hostIndex maps hosts to their counters: by canonical name, and by the
// spellings met in http and https URLs (the scheme decides the default
// port a canonical name drops). The first few spellings are also in few,
// which a lookup scans without hashing: most clients call a handful of
// hosts.
type hostIndex struct {
	canon       map[string]*hostCount
	http, https map[string]*hostCount
	spellings   int // len(http) + len(https)
	// fewHTTP and fewHTTPS are the first spellings of http and https.
	fewHTTP, fewHTTPS []spelling
}

// spelling is a URL host as written.
type spelling struct {
	host string
	c    *hostCount
}

// maxFew bounds hostIndex.few.
const maxFew = 4

// maxSpellings bounds the spellings remembered; a further spelling is
// found through its canonical form, which costs a little more.
const maxSpellings = 4 * MaxStatsHosts

func newStatsTable() *statsTable {
	n := 1 << bits.Len(uint(runtime.GOMAXPROCS(0)-1))
	n = min(n, 32)
	t := &statsTable{shards: n, shift: uint(64 - bits.TrailingZeros(uint(n)))}
	t.index.Store(&hostIndex{canon: map[string]*hostCount{}, http: map[string]*hostCount{}, https: map[string]*hostCount{}})
	t.other = t.newHost(OtherHost)
	return t
}

// hostCount is the counters of one host.
type hostCount struct {
	name   string
	shards []countShard
	mu     sync.Mutex                                // serialises additions to reason
	reason atomic.Pointer[map[string]*atomic.Uint64] // retries by reason; replaced on addition
}

// countShard is one shard of a host's counters. Calls and attempts are
// not counted as such: a call that succeeds at once is one increment of
// first, and the rest is derived from the rarer counters.
type countShard struct {
	first    atomic.Uint64 // first attempts made (sent or refused)
	later    atomic.Uint64 // attempts after the first made
	refused  atomic.Uint64 // attempts made that a gate refused
	unsent   atomic.Uint64 // calls that ended before their first attempt (held)
	hedges   atomic.Uint64 // hedged attempts made (also in later)
	keys     atomic.Uint64
	trips    atomic.Uint64
	giveUps  [len(stops) + 1]atomic.Uint64 // by index in stops; the last for any other
	refusals [len(gates)]atomic.Uint64
	_        [64 - (7+len(stops)+1+len(gates))*8%64]byte
}

// stops are the loop's stop reasons, in the order of countShard.giveUps.
var stops = [...]string{
	transport.StopFinal, transport.StopAttempts, transport.StopRefused, transport.StopDeadline,
	transport.StopHintOverCap, transport.StopBodyNotReplay, transport.StopResponseTooBig,
	transport.StopCanceled, transport.StopHeld,
}

// stopOther is the GiveUps key of a stop this version does not know.
const stopOther = "other"

var gates = [...]string{GateBreaker, GateBudget, GateHint, GateQuota, GatePace, GateIsolated, GateOther}

func (t *statsTable) newHost(name string) *hostCount {
	c := &hostCount{name: name, shards: make([]countShard, t.shards)}
	m := make(map[string]*atomic.Uint64)
	c.reason.Store(&m)
	return c
}

// shard returns the shard of c for the calling goroutine, picked by the
// address of its stack: goroutines run on stacks of their own, so calls
// from goroutines running at once spread over the shards as random picks
// would, for one multiplication (a pick from math/rand/v2 costs several
// nanoseconds more, a large part of the whole count).
func (t *statsTable) shard(c *hostCount) *countShard {
	var probe byte
	a := uint64(uintptr(unsafe.Pointer(&probe))) >> 10 // below: the frame's offset within the stack
	return &c.shards[(a*0x9e3779b97f4a7c15)>>t.shift]
}

// host returns the counters of req's host.
func (t *statsTable) host(req *http.Request) *hostCount {
	if req == nil || req.URL == nil {
		return t.named("")
	}
	idx := t.index.Load()
	host, scheme := req.URL.Host, req.URL.Scheme
	var (
		few []spelling
		m   map[string]*hostCount
	)
	switch scheme {
	case "http":
		few, m = idx.fewHTTP, idx.http
	case "https":
		few, m = idx.fewHTTPS, idx.https
	}
	for i := range few {
		if few[i].host == host {
			return few[i].c
		}
	}
	if len(few) == maxFew {
		if c, ok := m[host]; ok {
			return c
		}
	}
	return t.add(req.URL.Scheme, req.URL.Host, hostname.FromURL(req.URL))
}

// named returns the counters of a canonical host name.
func (t *statsTable) named(name string) *hostCount {
	if c, ok := t.index.Load().canon[name]; ok {
		return c
	}
	return t.add("", "", name)
}

// add returns the counters of the canonical host name, adding them when
// there is room (else it returns the other hosts' counters), and
// remembers the spelling of an http or https URL's host.
func (t *statsTable) add(scheme, written, name string) *hostCount {
	old := t.index.Load()
	c, known := old.canon[name]
	if !known && len(old.canon) >= MaxStatsHosts {
		c, known = t.other, true
	}
	remember := (scheme == "http" || scheme == "https") && old.spellings < maxSpellings
	if known && !remember {
		return c
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old = t.index.Load()
	idx := &hostIndex{canon: old.canon, http: old.http, https: old.https, spellings: old.spellings, fewHTTP: old.fewHTTP, fewHTTPS: old.fewHTTPS}
	if c, known = old.canon[name]; !known {
		if len(old.canon) >= MaxStatsHosts {
			c = t.other
		} else {
			c = t.newHost(strings.Clone(name)) // name may be part of a request's URL
			idx.canon = maps.Clone(old.canon)
			idx.canon[c.name] = c
		}
	}
	if remember && old.spellings < maxSpellings {
		m, few := &idx.http, &idx.fewHTTP
		if scheme == "https" {
			m, few = &idx.https, &idx.fewHTTPS
		}
		if _, ok := (*m)[written]; !ok {
			written = strings.Clone(written)
			*m = maps.Clone(*m)
			(*m)[written] = c
			idx.spellings++
			if len(*few) < maxFew {
				*few = append(slices.Clip(*few), spelling{written, c})
			}
		}
	}
	t.index.Store(idx)
	return c
}

// observer returns the retry loop's Observer for a chain: it counts each
// event, then passes it to next (when not nil).
func (t *statsTable) observer(next transport.Observer) transport.Observer {
	return &statsObserver{t: t, next: next}
}

type statsObserver struct {
	t    *statsTable
	next transport.Observer
}

// Observe counts one event of a retry loop and passes it on.
func (o *statsObserver) Observe(e transport.Event) {
	if e.Kind == transport.EventAttempt && e.Attempt <= 1 {
		// The healthy path: one lookup, one increment.
		o.t.shard(o.t.host(e.Request)).first.Add(1)
	} else {
		o.t.observeRare(e)
	}
	if o.next != nil {
		o.next.Observe(e)
	}
}

func (t *statsTable) observeRare(e transport.Event) {
	c := t.host(e.Request)
	switch e.Kind {
	case transport.EventAttempt:
		t.shard(c).later.Add(1)
	case transport.EventHedge:
		s := t.shard(c)
		s.later.Add(1)
		s.hedges.Add(1)
	case transport.EventRetry:
		c.retried(e.Reason)
	case transport.EventGiveUp:
		s := t.shard(c)
		switch {
		case e.Stop == transport.StopRefused:
			// The refused attempt was made (an EventAttempt) but not sent.
			s.refused.Add(1)
		case e.Attempt == 0:
			// Held, or cancelled while held, before the first attempt.
			s.unsent.Add(1)
		}
		if gate := refusedBy(e); gate != "" {
			s.refusals[slices.Index(gates[:], gate)].Add(1)
		}
		if e.Stop == transport.StopFinal && e.Err == nil && e.StatusCode >= 400 && e.StatusCode < 500 {
			return // the server's answer, not a failure
		}
		i := slices.Index(stops[:], e.Stop)
		if i < 0 {
			i = len(stops)
		}
		s.giveUps[i].Add(1)
	}
}

// retried counts a retry scheduled for reason.
func (c *hostCount) retried(reason string) {
	if n, ok := (*c.reason.Load())[reason]; ok {
		n.Add(1)
		return
	}
	c.mu.Lock()
	old := *c.reason.Load()
	n, ok := old[reason]
	if !ok {
		if len(old) >= maxReasons {
			reason = OtherReason
			n, ok = old[reason]
		}
		if !ok {
			m := make(map[string]*atomic.Uint64, len(old)+1)
			for k, v := range old {
				m[k] = v
			}
			n = new(atomic.Uint64)
			m[strings.Clone(reason)] = n
			c.reason.Store(&m)
		}
	}
	c.mu.Unlock()
	n.Add(1)
}

// key counts a key the idempotency link added, when it generated it; it
// is the link's OnKey.
func (t *statsTable) key(req *http.Request, key string) {
	if given, ok := idempotency.KeyFromContext(req.Context()); ok && given == key {
		return
	}
	t.shard(t.host(req)).keys.Add(1)
}

// breakerChange counts a trip; it is the breakers' OnStateChange.
func (t *statsTable) breakerChange(ch breaker.StateChange) {
	if ch.To == breaker.Open {
		t.shard(t.named(ch.Host)).trips.Add(1)
	}
}

// snapshot sums c's shards.
func (c *hostCount) snapshot() HostStats {
	var first, later, refused, unsent uint64
	h := HostStats{Host: c.name}
	var giveUps [len(stops) + 1]uint64
	var refusals [len(gates)]uint64
	for i := range c.shards {
		s := &c.shards[i]
		first += s.first.Load()
		later += s.later.Load()
		refused += s.refused.Load()
		unsent += s.unsent.Load()
		h.Hedges += s.hedges.Load()
		h.KeysGenerated += s.keys.Load()
		h.BreakerTrips += s.trips.Load()
		for j := range giveUps {
			giveUps[j] += s.giveUps[j].Load()
		}
		for j := range refusals {
			refusals[j] += s.refusals[j].Load()
		}
	}
	h.Calls = first + unsent
	if made := first + later; made > refused {
		h.Attempts = made - refused
	}
	for j, n := range giveUps {
		if n > 0 {
			stop := stopOther
			if j < len(stops) {
				stop = stops[j]
			}
			h.GiveUps = addCounts(h.GiveUps, map[string]uint64{stop: n})
		}
	}
	for j, n := range refusals {
		if n > 0 {
			h.Refusals = addCounts(h.Refusals, map[string]uint64{gates[j]: n})
		}
	}
	for reason, n := range *c.reason.Load() {
		if v := n.Load(); v > 0 {
			if h.Retries == nil {
				h.Retries = make(map[string]uint64)
			}
			h.Retries[reason] = v
		}
	}
	return h
}

// RefusalGate names the gate whose refusal ended the call an EventGiveUp
// reports: GateBreaker, GateBudget, GateHint, GateQuota, GatePace or
// GateOther; "" when e is not
// a refusal. Adapters use it to label refusals as Stats does.
func RefusalGate(e transport.Event) string {
	if e.Kind != transport.EventGiveUp {
		return ""
	}
	return refusedBy(e)
}
