package breaker

import (
	"hash/maphash"
	"math/bits"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hostKey identifies a tracked host: the request URL's scheme and host, or
// (scheme empty) a Config.Key. Lookups use the request's own strings, so
// finding a breaker builds no string.
type hostKey struct {
	scheme, host string
}

// keyOf returns the default key of req: its URL's scheme and host, with a
// default port removed and the host lower-cased. Neither step allocates for
// a lower-case host (slicing shares the string). ok is false when there is
// no host to key by.
func keyOf(req *http.Request) (k hostKey, ok bool) {
	u := req.URL
	host := u.Host
	if host == "" {
		return hostKey{}, false
	}
	switch {
	case u.Scheme == "http" && strings.HasSuffix(host, ":80"):
		host = host[:len(host)-len(":80")]
	case u.Scheme == "https" && strings.HasSuffix(host, ":443"):
		host = host[:len(host)-len(":443")]
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			host = strings.ToLower(host)
			break
		}
	}
	return hostKey{scheme: u.Scheme, host: host}, true
}

// registry maps hosts to breakers. It is split into shards, each with its
// own lock and its own share of the host bound, so lookups of different
// hosts do not contend. A lookup takes a shard's read lock; only a new
// host takes the write lock.
type registry struct {
	set       *settings
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	untracked atomic.Uint64
}

// shard is one part of a registry. It is padded to its own cache lines.
type shard struct {
	mu    sync.RWMutex
	m     map[hostKey]*Breaker
	limit int // this shard's share of MaxHosts
	_     [64]byte
}

// hostsPerShard is the target shard size: large enough that the bound is
// shared evenly, small enough that the eviction scan stays short.
const (
	hostsPerShard = 128
	maxShards     = 1024
)

// newRegistry returns an empty registry for the settings s. The shard
// count is a power of two near MaxHosts/128, between 1 and 1024, and the
// bound is split evenly between shards, so the total never exceeds
// MaxHosts.
func newRegistry(s *settings) *registry {
	n := 1
	if q := s.maxHosts / hostsPerShard; q > 1 {
		n = 1 << (bits.Len(uint(q)) - 1)
	}
	n = min(n, maxShards)
	r := &registry{set: s, seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range r.shards {
		r.shards[i].limit = s.maxHosts / n
		if i < s.maxHosts%n {
			r.shards[i].limit++
		}
		r.shards[i].m = make(map[hostKey]*Breaker)
	}
	return r
}

// get returns the breaker of k, creating it if needed, or nil when k's
// shard is full of breakers that must not be evicted.
func (r *registry) get(k hostKey) *Breaker {
	sh := &r.shards[maphash.String(r.seed, k.host)&r.mask]
	sh.mu.RLock()
	b := sh.m[k]
	sh.mu.RUnlock()
	if b != nil {
		return b
	}
	return r.insert(sh, k)
}

// insert adds a breaker for k to sh, evicting one if sh is at its bound.
func (r *registry) insert(sh *shard, k hostKey) *Breaker {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.m[k]; b != nil {
		return b
	}
	if len(sh.m) >= sh.limit && !sh.evictLocked(time.Now()) {
		r.untracked.Add(1)
		return nil
	}
	// One allocation holds the name and both key strings, so the key does
	// not pin the request's URL in memory.
	var name string
	if k.scheme == "" {
		name = strings.Clone(k.host)
		k.host = name
	} else {
		name = k.scheme + "://" + k.host
		k.scheme, k.host = name[:len(k.scheme)], name[len(k.scheme)+len("://"):]
	}
	b := newBreaker(name, r.set)
	sh.m[k] = b
	return b
}

// evictLocked removes the best candidate for eviction from sh (see
// Breaker.evictable): a closed breaker before an expired one, the least
// recently used first. It reports whether it removed one. sh.mu must be
// held for writing.
func (sh *shard) evictLocked(now time.Time) bool {
	var (
		victim   hostKey
		found    bool
		bestRank int
		bestUsed int64
	)
	for k, b := range sh.m {
		rank := b.evictable(now)
		if rank < 0 {
			continue
		}
		used := b.lastUsed.Load()
		if !found || rank < bestRank || rank == bestRank && used < bestUsed {
			victim, found, bestRank, bestUsed = k, true, rank, used
		}
	}
	if found {
		delete(sh.m, victim)
	}
	return found
}

// len returns the number of tracked hosts.
func (r *registry) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// snapshot returns the state of every tracked host, sorted by host.
func (r *registry) snapshot() []HostState {
	var all []*Breaker
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, b := range sh.m {
			all = append(all, b)
		}
		sh.mu.RUnlock()
	}
	out := make([]HostState, len(all))
	for i, b := range all {
		out[i] = b.Snapshot()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}
