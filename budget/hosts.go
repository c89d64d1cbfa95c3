package budget

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxHosts is the default bound on the hosts a Transport keeps state
// for.
const DefaultMaxHosts = 1024

// touchEvery is how stale an entry's last-use time may get before a lookup
// rewrites it. Rewriting it on every request would make every core write
// the same cache line.
const touchEvery = int64(time.Second)

// entry is the state of one host: its budget when budgets are per host, its
// throttle when throttling is on.
type entry struct {
	budget   Budget    // nil when the transport's budget is global
	throttle *Throttle // nil when throttling is off
	used     atomic.Int64
}

// touch records a use at now (Unix nanoseconds), coarsely.
func (e *entry) touch(now int64) {
	if now-e.used.Load() > touchEvery {
		e.used.Store(now)
	}
}

// registry maps hosts to entries. Lookups are lock-free and allocation-free:
// the map is replaced, never modified, so readers load it with one atomic
// read and index it with the request's own host string. Adding a host
// copies the map under a lock; that happens once per host.
//
// The number of hosts is bounded by max. When the map is full, entries
// unused for at least idle whose budget holds as much as a new one (by
// then indistinguishable from new ones) are dropped to make room; if none
// is, the new
// host shares the overflow entry with every other host beyond the bound,
// which is conservative (one budget for all of them) but never unbounded.
type registry struct {
	m        atomic.Pointer[map[string]*entry]
	newEntry func() *entry // makes a host's entry; called without the lock
	max      int
	idle     int64 // nanoseconds

	mu        sync.Mutex
	lastSweep int64
	overflow  *entry
}

func newRegistry(max int, idle time.Duration, newEntry func() *entry) *registry {
	r := &registry{newEntry: newEntry, max: max, idle: int64(idle), overflow: newEntry()}
	m := make(map[string]*entry)
	r.m.Store(&m)
	return r
}

// lookup returns host's entry, or nil if it has none.
func (r *registry) lookup(host string) *entry {
	return (*r.m.Load())[host]
}

// get returns host's entry, creating it if needed, and marks it used at now
// (Unix nanoseconds).
func (r *registry) get(host string, now int64) *entry {
	if e := (*r.m.Load())[host]; e != nil {
		e.touch(now)
		return e
	}
	return r.add(host, now)
}

// add creates host's entry, or returns the one a concurrent caller added,
// or the overflow entry when the registry is full.
func (r *registry) add(host string, now int64) *entry {
	fresh := r.newEntry() // outside the lock: it may run user code
	fresh.used.Store(now)

	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	if e := old[host]; e != nil {
		e.touch(now)
		return e
	}
	size := len(old)
	if size >= r.max {
		size = r.sweepLocked(old, now, fresh)
		if size >= r.max {
			r.overflow.touch(now)
			return r.overflow
		}
		old = *r.m.Load()
	}
	m := make(map[string]*entry, size+1)
	for k, v := range old {
		m[k] = v
	}
	m[host] = fresh
	r.m.Store(&m)
	return fresh
}

// sweepLocked drops the entries that a new entry, fresh, could replace
// unnoticed (see forgettable), at most once per tenth of idle, and returns
// the number of entries left. r.mu must be held.
func (r *registry) sweepLocked(old map[string]*entry, now int64, fresh *entry) int {
	if now-r.lastSweep < r.idle/10 {
		return len(old)
	}
	r.lastSweep = now
	m := make(map[string]*entry, len(old))
	for k, v := range old {
		if !r.forgettable(v, now, fresh) {
			m[k] = v
		}
	}
	if len(m) < len(old) {
		r.m.Store(&m)
	}
	return len(m)
}

// forgettable reports whether e may be dropped at now (Unix nanoseconds):
// it has been idle for idle, which empties its throttle's window and a
// Ratio's whose Window is the transport's, and its budget (when per host)
// holds at least as many retries as fresh's new one. The second test
// keeps the budgets of Config.NewBudget that remember longer than idle: a
// TokenBucket refilling slowly, a Ratio with a longer window. Swapping
// them for new ones would let their host retry beyond its budget.
func (r *registry) forgettable(e *entry, now int64, fresh *entry) bool {
	if now-e.used.Load() < r.idle {
		return false
	}
	if e.budget == nil || fresh.budget == nil || e.budget == fresh.budget {
		return true
	}
	at := time.Unix(0, now)
	return e.budget.Balance(at) >= fresh.budget.Balance(at)
}
