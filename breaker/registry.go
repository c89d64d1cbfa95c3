package breaker

import (
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/internal/hostname"
)

// hostKey identifies a tracked host: the request URL's canonical host (see
// Config.Key), or a Config.Key. Lookups use the request's own strings when
// its host is already canonical, so finding a breaker builds no string.
type hostKey struct {
	host string
}

// keyOf returns the default key of a request to u: u's host in the
// canonical form of internal/hostname (lower case, no trailing dot, IDNA
// A-label, no default port), the form the router and the budget use too.
// It does not allocate for a host already in that form. ok is false when
// there is no host to key by.
func keyOf(u *url.URL) (k hostKey, ok bool) {
	host := hostname.FromURL(u)
	return hostKey{host: host}, host != ""
}

// registry maps hosts to breakers, at most settings.maxHosts of them. It is
// split into shards by a hash of the host; each shard is an open-addressed
// hash table with atomic slots, so a lookup takes no lock and writes no
// shared memory: one hash, then atomic loads along a short probe sequence.
// Only adding a host takes a lock, its shard's mutex.
//
// The bound is global: a new host takes a free place if there is one, else
// the place of a breaker evicted from its own shard, else from another
// shard; if no breaker anywhere may be evicted, the host goes untracked.
type registry struct {
	set       *settings
	seed      maphash.Seed
	shardBits uint
	shards    []shard
	total     atomic.Int64 // tracked hosts, plus places reserved by inserts
	untracked atomic.Uint64
	memo      [memoSlots]memoSlot
}

// memoSlots is the number of places in a registry's memo (see forURL).
const memoSlots = 16

// memoSlot is one place of a registry's memo, on a cache line of its
// own: it is written only when the breaker a host finds there changes,
// and two hosts that share a slot must not slow down the others.
type memoSlot struct {
	b atomic.Pointer[Breaker]
	_ [56]byte
}

// shard is one part of a registry, padded to its own cache lines.
type shard struct {
	tab  atomic.Pointer[table]
	mu   sync.Mutex // serialises inserts, evictions and rebuilds
	live int        // breakers in tab; guarded by mu
	used int        // slots not nil (live and removed); guarded by mu
	_    [64]byte
}

// table is a linear-probing hash table of breakers. A slot goes from nil to
// a breaker and, when that breaker is evicted, to the removed marker;
// probes pass over removed slots and stop at nil ones. Readers may hold a
// table after a rebuild replaced it; its breakers stay valid.
type table struct {
	mask  uint64
	slots []atomic.Pointer[Breaker]
}

// removed marks a slot whose breaker was evicted. A slot is set to it
// only by table.drop, which first marks the breaker gone, so that no memo
// (see registry.forURL) hands it out again.
var removed = new(Breaker)

// drop removes the breaker in slot i from t: marked gone, then replaced
// by the removed marker.
func (t *table) drop(i int) {
	if b := t.slots[i].Load(); b != nil && b != removed {
		b.gone.Store(true)
	}
	t.slots[i].Store(removed)
}

// Shard sizing: large enough that the bound is shared evenly, small enough
// that the eviction scan stays short.
const (
	hostsPerShard = 128
	maxShards     = 1024
)

// newRegistry returns an empty registry for the settings s, with a power
// of two near MaxHosts/128 shards, between 1 and 1024.
func newRegistry(s *settings) *registry {
	n := 1
	if q := s.maxHosts / hostsPerShard; q > 1 {
		n = 1 << (bits.Len(uint(q)) - 1)
	}
	n = min(n, maxShards)
	r := &registry{set: s, seed: maphash.MakeSeed(), shardBits: uint(bits.Len(uint(n)) - 1), shards: make([]shard, n)}
	for i := range r.shards {
		r.shards[i].tab.Store(newTable(1))
	}
	return r
}

// newTable returns an empty table for n breakers: more than 2n slots, at
// least 8. A shard's table grows from the smallest size as hosts arrive,
// so an idle Transport costs little.
func newTable(n int) *table {
	n = max(1<<bits.Len(uint(2*n)), 8)
	return &table{mask: uint64(n - 1), slots: make([]atomic.Pointer[Breaker], n)}
}

// find returns the breaker of k, whose hash is h, or nil.
func (t *table) find(h uint64, k hostKey) *Breaker {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		b := t.slots[i].Load()
		if b == nil {
			return nil
		}
		if b.hash == h && b.key == k {
			return b
		}
	}
}

// forURL returns the breaker of u's host (the default key), creating it
// if needed, or nil when u has no host or its shard is full of breakers
// that must not be evicted.
//
// A request's host is usually written as it was the last time: the memo
// remembers, per slot picked from the host as written, the last breaker
// found for it, and hands it out again when the request's scheme and
// host are those of the request that made the breaker, and the breaker
// is still in the registry. That costs two string comparisons and three
// atomic loads, where a lookup computes the host's canonical form, hashes
// it and probes the table.
func (r *registry) forURL(u *url.URL) *Breaker {
	slot := &r.memo[memoIndex(u.Host)]
	if b := slot.b.Load(); b != nil && b.whost == u.Host && b.wscheme == u.Scheme && !b.gone.Load() {
		return b
	}
	k, ok := keyOf(u)
	if !ok {
		return nil
	}
	b := r.getSpelled(k, u.Scheme, u.Host)
	if b != nil && b.whost == u.Host && b.wscheme == u.Scheme && slot.b.Load() != b {
		slot.b.Store(b)
	}
	return b
}

// memoIndex picks host's slot in a registry's memo from its length and
// its first and last eight bytes, which tell apart the hosts of one
// client in most cases (a collision costs only a lookup).
func memoIndex(host string) int {
	n := len(host)
	h := uint64(n)
	if n >= 8 {
		h ^= word(host) ^ word(host[n-8:])*0x9e3779b97f4a7c15
	} else {
		for i := 0; i < n; i++ {
			h = h<<8 | uint64(host[i])
		}
	}
	return int((h * 0xff51afd7ed558ccd) >> (64 - 4) & (memoSlots - 1))
}

// word returns the first eight bytes of s (at least eight long) as a
// little-endian number: one load where the machine allows it.
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// get returns the breaker of k, creating it if needed, or nil when k's
// shard is full of breakers that must not be evicted.
func (r *registry) get(k hostKey) *Breaker { return r.getSpelled(k, "", "") }

// getSpelled is get for a request whose URL writes k's host as written
// under scheme: a breaker it creates remembers them for the memo (see
// forURL). Both are "" for a key that is not a URL's host.
func (r *registry) getSpelled(k hostKey, scheme, written string) *Breaker {
	h := maphash.String(r.seed, k.host)
	sh := &r.shards[h>>(64-r.shardBits)&uint64(len(r.shards)-1)]
	if b := sh.tab.Load().find(h, k); b != nil {
		return b
	}
	return r.insert(sh, h, k, scheme, written)
}

// insert adds a breaker for k to sh, making room if the registry is full;
// scheme and written are as for getSpelled.
func (r *registry) insert(sh *shard, h uint64, k hostKey, scheme, written string) *Breaker {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.tab.Load().find(h, k); b != nil {
		return b
	}
	if !r.reserve() && !sh.evictLocked(r.set.now()) {
		// Nothing to evict here: look elsewhere without holding sh.mu, so
		// that no two shard locks are ever held at once.
		sh.mu.Unlock()
		ok := r.evictElsewhere(sh) && r.reserve()
		sh.mu.Lock()
		if !ok {
			r.untracked.Add(1)
			return nil
		}
		if b := sh.tab.Load().find(h, k); b != nil {
			r.total.Add(-1) // a racing insert added k meanwhile
			return b
		}
	}
	t := sh.tab.Load()
	if sh.used >= len(t.slots)*3/4 {
		t = sh.rebuildLocked()
	}
	// The name is a copy, so the key does not pin the request's URL in
	// memory.
	name := strings.Clone(k.host)
	k.host = name
	b := newBreaker(name, r.set)
	b.key, b.hash = k, h
	if written != "" {
		b.whost = name
		if written != name {
			b.whost = strings.Clone(written)
		}
		switch scheme {
		case "http":
			b.wscheme = "http"
		case "https":
			b.wscheme = "https"
		default:
			b.wscheme = strings.Clone(scheme)
		}
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i].Load() == nil {
			t.slots[i].Store(b)
			break
		}
	}
	sh.live++
	sh.used++
	return b
}

// reserve takes a free place under the bound, if there is one.
func (r *registry) reserve() bool {
	for {
		n := r.total.Load()
		if n >= int64(r.set.maxHosts) {
			return false
		}
		if r.total.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// evictElsewhere evicts a breaker from a shard other than skip, freeing a
// place under the bound, and reports whether it did. It locks one shard at
// a time.
func (r *registry) evictElsewhere(skip *shard) bool {
	now := r.set.now()
	for i := range r.shards {
		sh := &r.shards[i]
		if sh == skip {
			continue
		}
		sh.mu.Lock()
		ok := sh.evictLocked(now)
		sh.mu.Unlock()
		if ok {
			r.total.Add(-1)
			return true
		}
	}
	return false
}

// rebuildLocked replaces sh's table, which is three quarters used, by one
// without removed slots and sized for one more breaker, and returns it.
// sh.mu must be held.
func (sh *shard) rebuildLocked() *table {
	old := sh.tab.Load()
	t := newTable(sh.live + 1)
	for i := range old.slots {
		b := old.slots[i].Load()
		if b == nil || b == removed {
			continue
		}
		for j := b.hash & t.mask; ; j = (j + 1) & t.mask {
			if t.slots[j].Load() == nil {
				t.slots[j].Store(b)
				break
			}
		}
	}
	sh.used = sh.live
	sh.tab.Store(t)
	return t
}

// evictSample is how many idle closed breakers eviction compares before it
// settles for the least recently used of them. Redis approximates LRU the
// same way; it keeps eviction O(1) in a large shard.
const evictSample = 8

// evictLocked removes the best candidate for eviction from sh (see
// Breaker.evictable at now, since the settings' origin): a closed
// breaker before an open one with its probe due, the least
// recently used first among a sample of evictSample closed breakers taken
// from a random slot on, or among all breakers of a shard with fewer. It
// reports whether it removed one. sh.mu must be held.
func (sh *shard) evictLocked(now time.Duration) bool {
	t := sh.tab.Load()
	victim := -1
	var bestRank int
	var bestUsed int64
	start, closed := rand.Uint64(), 0
	for n := uint64(0); n <= t.mask && closed < evictSample; n++ {
		i := int((start + n) & t.mask)
		b := t.slots[i].Load()
		if b == nil || b == removed {
			continue
		}
		rank := b.evictable(now)
		if rank < 0 {
			continue
		}
		if rank == 0 {
			closed++
		}
		used := b.lastUsed.Load()
		if victim < 0 || rank < bestRank || rank == bestRank && used < bestUsed {
			victim, bestRank, bestUsed = i, rank, used
		}
	}
	if victim < 0 {
		return false
	}
	t.drop(victim)
	sh.live--
	return true
}

// each calls f for every tracked breaker.
func (r *registry) each(f func(*Breaker)) {
	for i := range r.shards {
		t := r.shards[i].tab.Load()
		for j := range t.slots {
			if b := t.slots[j].Load(); b != nil && b != removed {
				f(b)
			}
		}
	}
}

// len returns the number of tracked hosts.
func (r *registry) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += sh.live
		sh.mu.Unlock()
	}
	return n
}

// snapshot returns the state of every tracked host, sorted by host.
func (r *registry) snapshot() []HostState {
	var out []HostState
	r.each(func(b *Breaker) { out = append(out, b.Snapshot()) })
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}
