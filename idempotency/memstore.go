package idempotency

import (
	"container/heap"
	"context"
	"strings"
	"sync"
	"time"
)

// Defaults of MemoryConfig.
const (
	DefaultMaxEntries    = 100_000
	DefaultMaxBytes      = 64 << 20
	DefaultMaxScopeShare = 0.25
)

// entryOverhead is the memory an entry costs besides its key and response.
const entryOverhead = 160

// MemoryConfig bounds a MemoryStore. The zero value is the documented
// default of every field.
type MemoryConfig struct {
	// MaxEntries is the most keys held at once, in flight or completed.
	// Zero or negative means 100,000.
	MaxEntries int
	// MaxBytes bounds the memory held by keys and stored responses, as
	// estimated from their lengths. Zero or negative means 64 MiB.
	MaxBytes int64
	// MaxScopeShare is the largest share of MaxEntries and of MaxBytes
	// that the keys of one scope may hold, so that one caller cannot fill
	// the store and lock the others out. Zero or negative means 1/4; 1 or
	// more means no bound per scope.
	MaxScopeShare float64
}

// MemoryStore is a Store in process memory, for a single server (servers
// behind a load balancer need a shared store). It is safe for concurrent
// use; one mutex guards it, and every operation is O(log n).
//
// Records expire lazily: each operation first removes the records whose
// lease or TTL has ended, in expiry order, so no goroutine runs in the
// background and there is nothing to close.
//
// A record is never removed before it expires: forgetting a reservation
// would let a concurrent repeat run the handler a second time, and
// forgetting a completed record would let a retry run it again. So when a
// new key would exceed MaxEntries or MaxBytes, Reserve returns
// ErrStoreFull (the middleware answers 503 with Retry-After) until
// records expire: size the store for the keyed requests of one TTL. A
// response that does not fit is kept as NotReplayable (its header and
// body dropped, a few bytes over the bound at worst), which keeps its key
// used.
//
// Keys are bounded per scope too: the scope of a key is the part before
// its last newline (StoreKey's layout; a key without one belongs to no
// scope), and one scope may hold at most MaxScopeShare of the entries and
// bytes. A caller filling its share gets ErrStoreFull while the others
// go on. The default scope gives each credential its own share, but a
// caller who can mint credentials (anonymous cookies, say) can take
// several: rate-limit such callers in front of the middleware, or scope
// by an authenticated principal.
//
// Create one with NewMemoryStore; the zero value is not usable.
type MemoryStore struct {
	maxEntries      int
	maxBytes        int64
	maxScopeEntries int
	maxScopeBytes   int64

	mu        sync.Mutex
	entries   map[string]*entry
	scopes    map[string]*scopeUse
	expiry    expiryHeap // every entry, soonest expiry first
	bytes     int64
	lastToken uint64
}

// entry is one key's record with its bookkeeping. Guarded by
// MemoryStore.mu.
type entry struct {
	key   string
	rec   Record
	size  int64
	index int       // position in MemoryStore.expiry
	scope *scopeUse // nil for a key without a scope
}

// scopeUse is what one scope's entries hold. Guarded by MemoryStore.mu.
type scopeUse struct {
	name    string
	entries int
	bytes   int64
}

// NewMemoryStore returns an empty MemoryStore bounded by cfg.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxScopeShare <= 0 {
		cfg.MaxScopeShare = DefaultMaxScopeShare
	}
	share := min(cfg.MaxScopeShare, 1)
	return &MemoryStore{
		maxEntries:      cfg.MaxEntries,
		maxBytes:        cfg.MaxBytes,
		maxScopeEntries: max(1, int(share*float64(cfg.MaxEntries))),
		maxScopeBytes:   max(1, int64(share*float64(cfg.MaxBytes))),
		entries:         make(map[string]*entry),
		scopes:          make(map[string]*scopeUse),
	}
}

// scopeOf returns the scope part of a store key, and whether it has one.
func scopeOf(key string) (string, bool) {
	i := strings.LastIndexByte(key, '\n')
	if i < 0 {
		return "", false
	}
	return key[:i], true
}

// Reserve implements Store. A lease of zero or less expires at once.
func (s *MemoryStore) Reserve(_ context.Context, key string, fp Fingerprint, lease time.Duration) (Record, bool, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if e := s.entries[key]; e != nil {
		return e.rec, false, nil
	}
	size := int64(len(key)) + entryOverhead
	var use *scopeUse
	if name, ok := scopeOf(key); ok {
		use = s.scopes[name]
		if use == nil {
			use = &scopeUse{name: name}
		}
	}
	if !s.fitsLocked(use, 1, size) {
		return Record{}, false, ErrStoreFull
	}
	if use != nil && use.entries == 0 {
		s.scopes[use.name] = use
	}
	s.lastToken++
	e := &entry{
		key:   key,
		rec:   Record{Fingerprint: fp, Token: s.lastToken, Expires: now.Add(lease)},
		scope: use,
	}
	s.entries[key] = e
	heap.Push(&s.expiry, e)
	s.addLocked(e, 1, size)
	return e.rec, true, nil
}

// Renew implements Store. A lease of zero or less expires at once.
func (s *MemoryStore) Renew(_ context.Context, key string, token uint64, lease time.Duration) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	e := s.entries[key]
	if e == nil || e.rec.Response != nil || e.rec.Token != token {
		return ErrLeaseLost
	}
	e.rec.Expires = now.Add(lease)
	heap.Fix(&s.expiry, e.index)
	return nil
}

// Complete implements Store. A ttl of zero or less expires at once.
func (s *MemoryStore) Complete(_ context.Context, key string, token uint64, resp *Response, ttl time.Duration) error {
	if resp == nil {
		resp = &Response{Status: 200, NotReplayable: true}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	e := s.entries[key]
	if e == nil || e.rec.Response != nil || e.rec.Token != token {
		return ErrLeaseLost
	}
	add := resp.size()
	if !s.fitsLocked(e.scope, 0, add) {
		resp = &Response{Status: resp.Status, NotReplayable: true, OutcomeUnknown: resp.OutcomeUnknown}
		add = resp.size() // a few bytes over the bound at worst
	}
	e.rec.Response = resp
	e.rec.Expires = now.Add(ttl)
	s.addLocked(e, 0, add)
	heap.Fix(&s.expiry, e.index)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key string, token uint64) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	e := s.entries[key]
	if e == nil || e.rec.Response != nil || e.rec.Token != token {
		return ErrLeaseLost
	}
	s.removeLocked(e)
	return nil
}

// Lookup implements Store.
func (s *MemoryStore) Lookup(_ context.Context, key string) (Record, bool, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if e := s.entries[key]; e != nil {
		return e.rec, true, nil
	}
	return Record{}, false, nil
}

// Len returns the number of live keys, in flight or completed.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	return len(s.entries)
}

// Bytes returns the estimated memory held by live keys and responses.
func (s *MemoryStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(time.Now())
	return s.bytes
}

// expireLocked removes every entry whose record ended at or before now.
// The caller holds s.mu.
func (s *MemoryStore) expireLocked(now time.Time) {
	for len(s.expiry) > 0 && !s.expiry[0].rec.Expires.After(now) {
		s.removeLocked(s.expiry[0])
	}
}

// fitsLocked reports whether n more entries and size more bytes fit in
// the store and in use (nil for no scope). The caller holds s.mu.
func (s *MemoryStore) fitsLocked(use *scopeUse, n int, size int64) bool {
	if len(s.entries)+n > s.maxEntries || s.bytes+size > s.maxBytes {
		return false
	}
	return use == nil || use.entries+n <= s.maxScopeEntries && use.bytes+size <= s.maxScopeBytes
}

// addLocked counts n more entries and size more bytes for e. The caller
// holds s.mu.
func (s *MemoryStore) addLocked(e *entry, n int, size int64) {
	e.size += size
	s.bytes += size
	if e.scope != nil {
		e.scope.entries += n
		e.scope.bytes += size
	}
}

// removeLocked deletes e from every structure. The caller holds s.mu.
func (s *MemoryStore) removeLocked(e *entry) {
	delete(s.entries, e.key)
	heap.Remove(&s.expiry, e.index)
	s.bytes -= e.size
	if u := e.scope; u != nil {
		u.entries--
		u.bytes -= e.size
		if u.entries == 0 {
			delete(s.scopes, u.name)
		}
	}
}

// expiryHeap orders entries by expiry, soonest first (container/heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].rec.Expires.Before(h[j].rec.Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
