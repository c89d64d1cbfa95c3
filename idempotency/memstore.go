package idempotency

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Defaults of MemoryConfig.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
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
}

// MemoryStore is a Store in process memory, for a single server (servers
// behind a load balancer need a shared store). It is safe for concurrent
// use; one mutex guards it, and every operation is O(log n).
//
// Records expire lazily: each operation first removes the records whose
// lease or TTL has ended, in expiry order, so no goroutine runs in the
// background and there is nothing to close. When a new key would exceed
// MaxEntries or MaxBytes, completed records are evicted, oldest completion
// first; in-flight reservations are never evicted (Reserve returns
// ErrStoreFull instead), since forgetting one would let a concurrent repeat
// run the handler a second time. A response too large to fit even after
// evicting every completed record is kept as NotReplayable (its body
// dropped), which keeps the key used; completed records are evicted only
// when that makes room.
//
// Create one with NewMemoryStore; the zero value is not usable.
type MemoryStore struct {
	maxEntries int
	maxBytes   int64

	mu        sync.Mutex
	entries   map[string]*entry
	expiry    expiryHeap // every entry, soonest expiry first
	oldest    *entry     // completed entries, oldest completion first
	newest    *entry
	bytes     int64
	doneLen   int   // entries in the completed list
	doneBytes int64 // their sizes
	lastToken uint64
}

// entry is one key's record with its bookkeeping. Guarded by
// MemoryStore.mu.
type entry struct {
	key        string
	rec        Record
	size       int64
	index      int    // position in MemoryStore.expiry
	prev, next *entry // neighbours in the completed list
}

// NewMemoryStore returns an empty MemoryStore bounded by cfg.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &MemoryStore{
		maxEntries: cfg.MaxEntries,
		maxBytes:   cfg.MaxBytes,
		entries:    make(map[string]*entry),
	}
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
	if !s.makeRoomLocked(1, size) {
		return Record{}, false, ErrStoreFull
	}
	s.lastToken++
	e := &entry{
		key:  key,
		rec:  Record{Fingerprint: fp, Token: s.lastToken, Expires: now.Add(lease)},
		size: size,
	}
	s.entries[key] = e
	heap.Push(&s.expiry, e)
	s.bytes += size
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
	if !s.makeRoomLocked(0, add) {
		resp = &Response{Status: resp.Status, NotReplayable: true}
		add = resp.size()
		s.makeRoomLocked(0, add) // a few bytes over the bound at worst
	}
	e.rec.Response = resp
	e.rec.Expires = now.Add(ttl)
	e.size += add
	s.bytes += add
	heap.Fix(&s.expiry, e.index)
	s.pushNewestLocked(e)
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

// makeRoomLocked evicts completed entries, oldest first, until n more
// entries and size more bytes fit, and reports whether they do. When they
// would not fit even without any completed entry (the in-flight ones fill
// the store), it evicts nothing: that would free keys for a second run and
// gain nothing. The caller holds s.mu.
func (s *MemoryStore) makeRoomLocked(n int, size int64) bool {
	if len(s.entries)-s.doneLen+n > s.maxEntries || s.bytes-s.doneBytes+size > s.maxBytes {
		return false
	}
	for len(s.entries)+n > s.maxEntries || s.bytes+size > s.maxBytes {
		if s.oldest == nil {
			return false
		}
		s.removeLocked(s.oldest)
	}
	return true
}

// removeLocked deletes e from every structure. The caller holds s.mu.
func (s *MemoryStore) removeLocked(e *entry) {
	delete(s.entries, e.key)
	heap.Remove(&s.expiry, e.index)
	if e.rec.Response != nil {
		s.unlinkLocked(e)
	}
	s.bytes -= e.size
}

// pushNewestLocked appends e to the completed list. The caller holds s.mu.
func (s *MemoryStore) pushNewestLocked(e *entry) {
	e.prev, e.next = s.newest, nil
	s.doneLen++
	s.doneBytes += e.size
	if s.newest != nil {
		s.newest.next = e
	} else {
		s.oldest = e
	}
	s.newest = e
}

// unlinkLocked removes e from the completed list. The caller holds s.mu.
func (s *MemoryStore) unlinkLocked(e *entry) {
	s.doneLen--
	s.doneBytes -= e.size
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.newest = e.prev
	}
	e.prev, e.next = nil, nil
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
