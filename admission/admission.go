package admission

import (
	"context"
	"hash/maphash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
)

// Defaults applied by New to the zero fields of a Config.
const (
	DefaultMaxWait = 60 * time.Second
	DefaultSpread  = 100 * time.Millisecond
	DefaultMaxKeys = 4096
)

// Config configures an Admission. The zero value is the documented default
// of every field; New normalises a copy.
type Config struct {
	// MaxWait is the longest a turn may wait, queue included (the retry
	// loop's MaxRetryAfter). A wait hint or a quota pause longer than it
	// pauses nothing: the call that received it gives up on its own. Zero
	// means 60 s; negative means no wait at all: every turn that would wait
	// is refused.
	MaxWait time.Duration
	// Spread is the least random spread added to a pause's end, so that
	// clients told the same instant do not return in the same millisecond
	// (the spread is up to the larger of a tenth of the pause and Spread).
	// Zero means 100 ms; negative means none.
	Spread time.Duration
	// Retryable are the statuses that are throttles when they carry a wait
	// hint (429 is one with or without). Nil means classify.DefaultRetryable.
	Retryable *classify.Statuses
	// Key, when non-nil, names the caller partition of a request within
	// its host: requests of one host with the same key share a state (its
	// 429s, its quota and its pace); "" is the shared partition. Hosts are
	// always separate, and a 5xx's wait hint pauses every partition of its
	// host. Nil means a digest of the request's credentials
	// (Authorization, Proxy-Authorization, Cookie, X-Api-Key, Api-Key,
	// X-Auth-Token): one state per host and credential. It is called only
	// for hosts that have a state, and must be safe for concurrent use.
	Key func(*http.Request) string
	// DisableQuota ignores the quota headers (RateLimit, X-RateLimit-*):
	// no pacing by announced quota. The zero value paces by them.
	DisableQuota bool
	// DisablePace never learns a pace from throttling: a throttle still
	// pauses its key when nothing was admitted, but a limiter refusing the
	// excess does not slow the key. The zero value learns the pace.
	DisablePace bool
	// MaxKeys bounds the states kept (one per host and partition that was
	// throttled or announced a quota). Zero means 4,096.
	MaxKeys int
}

func (c Config) normalize() Config {
	switch {
	case c.MaxWait == 0:
		c.MaxWait = DefaultMaxWait
	case c.MaxWait < 0:
		c.MaxWait = 0
	}
	switch {
	case c.Spread == 0:
		c.Spread = DefaultSpread
	case c.Spread < 0:
		c.Spread = 0
	}
	if c.Retryable == nil {
		c.Retryable = &classify.DefaultRetryable
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return c
}

// Admission holds the turn states of one client's keys. Create one with
// New; a nil *Admission admits everything at once. Safe for concurrent use.
//
//	a := admission.New(admission.Config{})
//	turn, wait, err := a.Take(req)
//	if err != nil { return err }           // refused: a *RefusedError
//	if wait > 0 { err = turn.Wait(ctx) }   // queued
//	resp, err := base.RoundTrip(req)
//	turn.Done(resp, err)
type Admission struct {
	cfg    Config
	states atomic.Int32 // states in hosts; 0 is the fast path
	seed   maphash.Seed

	mu        sync.Mutex
	hosts     map[string]*hostEntry
	n         int // states in hosts
	lastSweep time.Time
}

// hostEntry is one host's states, by caller partition, and its host-wide
// pause. Guarded by Admission.mu.
type hostEntry struct {
	name       string
	pauseUntil time.Time // a 5xx's wait hint while nothing was admitted
	creds      map[uint64]*state
}

// New returns an Admission configured by cfg.
func New(cfg Config) *Admission {
	return &Admission{cfg: cfg.normalize(), seed: maphash.MakeSeed()}
}

// Turn is one attempt's place at its key. Take returns it; exactly one of
// Done (the attempt was sent) or Cancel (it was not) must follow, and
// either may be called again harmlessly. The zero Turn is an untracked
// turn of no Admission: its methods do nothing.
type Turn struct {
	a     *Admission
	req   *http.Request
	tk    *ticket // nil: the key had no state when the turn was given
	ended bool
}

// ticket is what a turn of a key with a state holds.
type ticket struct {
	st      *state
	w       *waiter // the queue place, while waiting
	granted time.Time
	iv      time.Duration // the spacing charged for this turn
	limit   Limit         // what the queued turn waits for
}

// Limit names what a queued turn waits for (Take's wait > 0): the
// server's wait hint, its quota, or the pace learned from its throttling.
// It is LimitNone for a turn given at once.
func (t *Turn) Limit() Limit {
	if t.tk == nil {
		return LimitNone
	}
	return t.tk.limit
}

// Take asks for a turn for an attempt of req. It returns at once:
//
//   - wait == 0 and err == nil: the turn is given, the attempt may go now;
//   - wait > 0: the turn is queued behind others or a pause, about wait
//     from now; call Turn.Wait before sending;
//   - err != nil: refused, unsent, a *RefusedError: the wait would end
//     after the deadline of req's context or exceed Config.MaxWait.
func (a *Admission) Take(req *http.Request) (Turn, time.Duration, error) {
	if a != nil && a.states.Load() != 0 {
		return a.takeSlow(req)
	}
	return Turn{a: a, req: req}, 0, nil // no state anywhere: one atomic load
}

// takeSlow is Take for an Admission that has states.
func (a *Admission) takeSlow(req *http.Request) (Turn, time.Duration, error) {
	host := hostname.FromURL(req.URL)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[host]
	if h == nil {
		return Turn{a: a, req: req}, 0, nil
	}
	cred := a.cred(req)
	st := h.creds[cred]
	if st == nil {
		if !now.Before(h.pauseUntil) {
			return Turn{a: a, req: req}, 0, nil
		}
		// The host is paused: calls of a new partition queue too.
		if st = a.newState(h, cred, now); st == nil {
			return Turn{a: a, req: req}, 0, nil
		}
	}
	deadline, _ := req.Context().Deadline()
	return a.take(st, req, now, deadline)
}

// TryTake gives a turn for an attempt of req only if it is free now: the
// key is not paused, its pace has a turn now and nobody waits. It never
// queues and does not count as an ask in the key's demand, so an optional
// attempt (a hedge) that does not go leaves no trace. ok false means no
// turn: the zero Turn.
func (a *Admission) TryTake(req *http.Request) (turn Turn, ok bool) {
	if a.idle() {
		return Turn{a: a, req: req}, true
	}
	host := hostname.FromURL(req.URL)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[host]
	if h == nil {
		return Turn{a: a, req: req}, true
	}
	st := h.creds[a.cred(req)]
	if st == nil {
		if now.Before(h.pauseUntil) {
			return Turn{}, false
		}
		return Turn{a: a, req: req}, true
	}
	if at, _ := st.earliest(now); len(st.queue) > 0 || at.After(now) {
		return Turn{}, false
	}
	st.used = now
	iv := st.grant(now)
	return Turn{a: a, req: req, tk: &ticket{st: st, granted: now, iv: iv}}, true
}

// take gives, queues or refuses a turn of st. Called with a.mu held.
func (a *Admission) take(st *state, req *http.Request, now, deadline time.Time) (Turn, time.Duration, error) {
	st.roll(now)
	st.cur.asked++
	st.used = now
	at, lim := st.earliest(now)
	ahead := len(st.queue)
	if ahead == 0 && !at.After(now) {
		iv := st.grant(now)
		return Turn{a: a, req: req, tk: &ticket{st: st, granted: now, iv: iv}}, 0, nil
	}
	if iv, ilim := st.interval(now); iv > 0 && ahead > 0 {
		at = at.Add(time.Duration(ahead) * iv)
		if lim == LimitNone {
			lim = ilim
		}
		if ilim == LimitQuota && at.After(st.quotaEnd) && !st.quotaEnd.Before(now) {
			// The quota's pace ends with its window: at the reset the
			// queue goes on the new window's turns.
			at = maxTime(st.quotaEnd, st.pauseUntil)
		}
	}
	if lim == LimitNone {
		lim = st.why(now)
	}
	wait := at.Sub(now)
	if wait > a.cfg.MaxWait+a.spreadCap(a.cfg.MaxWait) || !deadline.IsZero() && at.After(deadline) {
		return Turn{}, 0, &RefusedError{Host: st.host.name, Limit: lim, Wait: wait, Ahead: ahead}
	}
	w := &waiter{ch: make(chan struct{})}
	st.queue = append(st.queue, w)
	a.dispatch(st, now)
	if w.granted {
		return Turn{a: a, req: req, tk: &ticket{st: st, granted: w.at, iv: w.iv}}, 0, nil
	}
	return Turn{a: a, req: req, tk: &ticket{st: st, w: w, limit: lim}}, max(wait, 1), nil
}

// Wait waits for a queued turn (Take's wait > 0). It returns nil when the
// turn is given, or ctx's error when ctx ends first: the place is then
// given back and the turn is over (Done and Cancel do nothing).
func (t *Turn) Wait(ctx context.Context) error {
	if t.tk == nil || t.tk.w == nil {
		return nil
	}
	tk := t.tk
	w := tk.w
	select {
	case <-w.ch:
		tk.granted, tk.iv, tk.w = w.at, w.iv, nil
		return nil
	case <-ctx.Done():
	}
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	tk.w, t.ended = nil, true
	now := time.Now()
	if w.granted {
		tk.st.giveBack(w.iv, now)
	} else {
		tk.st.remove(w)
	}
	a.dispatch(tk.st, now)
	return ctx.Err()
}

// Cancel gives back a turn whose attempt was not sent: the next waiter
// moves up at once. A queued turn leaves the queue.
func (t *Turn) Cancel() {
	if t.ended || t.a == nil {
		return
	}
	t.ended = true
	tk := t.tk
	if tk == nil {
		return
	}
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	switch {
	case tk.w != nil && !tk.w.granted:
		tk.st.remove(tk.w)
	case tk.w != nil:
		tk.st.giveBack(tk.w.iv, now)
	default:
		tk.st.giveBack(tk.iv, now)
	}
	tk.w = nil
	a.dispatch(tk.st, now)
}

// Done reports what the attempt sent on this turn got: resp, or err when
// no response came. An err matching classify.ErrNotSent (a gate below
// refused the attempt) gives the turn back, as Cancel does.
func (t *Turn) Done(resp *http.Response, err error) {
	if t.tk == nil && resp != nil && resp.StatusCode < 400 && t.a.idle() && !t.a.quotaIn(resp.Header) {
		t.ended = true
		return // the fast path: nothing to learn, no clock read
	}
	t.done(resp, err)
}

// idle reports whether a has no state (a nil Admission has none).
func (a *Admission) idle() bool { return a == nil || a.states.Load() == 0 }

// quotaIn reports whether h may carry a quota a reads.
func (a *Admission) quotaIn(h http.Header) bool {
	return a != nil && !a.cfg.DisableQuota && hasQuota(h)
}

// done is Done past its fast path.
func (t *Turn) done(resp *http.Response, err error) {
	if t.ended || t.a == nil {
		return
	}
	if resp == nil && err != nil && classify.NotSent(err) {
		t.Cancel()
		return
	}
	t.ended = true
	a := t.a
	if t.tk == nil && (resp == nil || a.states.Load() == 0 && !a.mayTell(resp)) {
		return // nothing to learn, no clock read
	}
	now := time.Now()
	sig := a.read(resp, now)
	var host string
	if t.tk == nil {
		host = hostname.FromURL(t.req.URL)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var st *state
	var granted time.Time
	if t.tk == nil {
		st = a.lookup(host, t.req, sig, now)
		if st == nil {
			a.sweep(now)
			return
		}
	} else {
		st, granted = t.tk.st, t.tk.granted
		st.inflight--
	}
	a.apply(st, sig, resp != nil, granted, now)
	a.dispatch(st, now)
	a.sweep(now)
}

// Busy reports whether req's key is paused, paced, has calls waiting, or
// was throttled in the last 10 s: a hedge toward it would spend turns
// others wait for, or add load to a server that has just asked for less.
func (a *Admission) Busy(req *http.Request) bool {
	if a == nil || a.states.Load() == 0 {
		return false
	}
	host := hostname.FromURL(req.URL)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[host]
	if h == nil {
		return false
	}
	if now.Before(h.pauseUntil) {
		return true
	}
	st := h.creds[a.cred(req)]
	if st == nil {
		return false
	}
	at, _ := st.earliest(now)
	iv, _ := st.interval(now)
	return len(st.queue) > 0 || at.After(now) || iv > 0 || !st.lastT.IsZero() && now.Sub(st.lastT) < paceIdle
}

// credHeaders are the headers whose values tell callers apart by default.
var credHeaders = [...]string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token"}

// cred returns the caller partition of req. Called with a.mu held (for
// no reason but that it is called there; it reads nothing shared).
func (a *Admission) cred(req *http.Request) uint64 {
	if a.cfg.Key != nil {
		k := a.cfg.Key(req)
		if k == "" {
			return 0
		}
		return maphash.String(a.seed, k) | 1
	}
	var h maphash.Hash
	h.SetSeed(a.seed)
	found := false
	for i, name := range credHeaders {
		for _, v := range req.Header[name] {
			found = true
			h.WriteByte(byte(i))
			h.WriteString(v)
			h.WriteByte(0)
		}
	}
	if !found {
		return 0
	}
	return h.Sum64() | 1
}

// lookup finds or, for a signal that starts one, creates the state of the
// key of req, for an attempt sent untracked. Called with a.mu
// held.
func (a *Admission) lookup(host string, req *http.Request, sig signal, now time.Time) *state {
	cred := a.cred(req)
	if h := a.hosts[host]; h != nil {
		if st := h.creds[cred]; st != nil {
			return st
		}
	}
	if sig.kind == signalNone {
		return nil
	}
	h := a.hosts[host]
	if h == nil {
		if a.hosts == nil {
			a.hosts = make(map[string]*hostEntry)
		}
		h = &hostEntry{name: host, creds: make(map[uint64]*state)}
		a.hosts[host] = h
	}
	st := a.newState(h, cred, now)
	if st == nil && len(h.creds) == 0 {
		delete(a.hosts, host)
	}
	return st
}

// newState adds the state of (h, cred), evicting the idlest idle state when
// the table is full; nil when nothing can be evicted. Called with a.mu held.
func (a *Admission) newState(h *hostEntry, cred uint64, now time.Time) *state {
	if a.n >= a.cfg.MaxKeys && !a.evict(now) {
		return nil
	}
	st := &state{host: h, cred: cred, created: now, used: now}
	st.cur.start = now
	h.creds[cred] = st
	a.hosts[h.name] = h // eviction may have dropped h with its last state
	a.n++
	a.states.Store(int32(a.n))
	return st
}

// idleAfter is how long a state with nothing queued, in flight or paused
// is kept after its last use.
const idleAfter = time.Minute

// evict drops the idlest state that can be dropped. Called with a.mu held.
func (a *Admission) evict(now time.Time) bool {
	var (
		victim *state
		oldest time.Time
	)
	for _, h := range a.hosts {
		for _, st := range h.creds {
			if st.idle(now) && (victim == nil || st.used.Before(oldest)) {
				victim, oldest = st, st.used
			}
		}
	}
	if victim == nil {
		return false
	}
	a.drop(victim)
	return true
}

// sweep drops states idle for idleAfter, at most every ten seconds.
// Called with a.mu held.
func (a *Admission) sweep(now time.Time) {
	if now.Sub(a.lastSweep) < 10*time.Second {
		return
	}
	a.lastSweep = now
	for _, h := range a.hosts {
		for _, st := range h.creds {
			if st.idle(now) && now.Sub(st.used) >= idleAfter {
				a.drop(st)
			}
		}
	}
}

// drop removes an idle state. Called with a.mu held.
func (a *Admission) drop(st *state) {
	h := st.host
	delete(h.creds, st.cred)
	if len(h.creds) == 0 && !time.Now().Before(h.pauseUntil) {
		delete(a.hosts, h.name)
	}
	a.n--
	a.states.Store(int32(a.n))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// spreadCap is the largest spread added to a pause of d.
func (a *Admission) spreadCap(d time.Duration) time.Duration {
	return max(d/10, a.cfg.Spread)
}
