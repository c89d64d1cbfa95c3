package transport

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Latency tracking, per host, for hedged requests (Config.Hedge) and
// learned attempt timeouts (Config.LearnedTimeout). Nothing here runs
// unless one of them is on.
//
// Each host has a log-linear histogram of its recent attempts' latencies
// (the time from sending an attempt to its response headers): every power
// of two from 4 µs to 2^38 ns (about 4.6 minutes) is split into eight
// buckets, so a quantile read from it is at most an eighth (12.5 %) above
// the true value, and 208 counters of four bytes cover every latency an
// HTTP call can have. Counts live in two windows: the current one takes
// every sample until it holds latWindowSamples or is latWindowAge old, then
// the older is cleared and becomes current. Quantiles are read over both,
// so they reflect the last one to two windows of traffic (between 1,000
// and 2,000 attempts on a busy host, one to two minutes on a quiet one)
// and forget what came before.
//
// Recording costs a bucket index (a leading-zeros count), two atomic adds,
// with learned timeouts on two atomic loads more (the streak of censored
// attempts, the longest recent answer; a lock only when an answer is the
// longest of its 5 s slot or starts a slot), and, every latRecompute samples (every sample until there are enough to
// learn from), a pass over the buckets that caches the
// quantiles the Transport's configuration asks for, so reading a hedge
// delay or a timeout is one atomic load. A host costs about 1.7 KiB; at
// most maxLatencyHosts are tracked per Transport (further hosts are not,
// and their attempts behave as with tracking off until idle ones are
// forgotten).

const (
	latMinShift  = 12 // the first octave starts at 2^12 ns; shorter latencies count in bucket 0
	latSubShift  = 3  // 2^3 buckets per octave
	latOctaves   = 26 // 2^12 … 2^38 ns
	latBuckets   = latOctaves << latSubShift
	latRecompute = 16 // samples between two passes that cache the quantiles

	latWindowSamples = 1000
	latWindowAge     = time.Minute

	// latSlot is how long a success's latency, or a group of attempts
	// mostly cut, keeps raising a host's learned timeout (one to two
	// slots).
	latSlot = 5 * time.Second
	// latStreak censored attempts in a row (cut, or ended by their
	// caller's deadline, with no success between), over at least the
	// learned timeout, suspend the learned timeout for one to two slots
	// (see LearnedTimeoutConfig). A host stalling half its connections
	// does that once in 65,536 attempts; a pause of the client (its
	// attempts all cut at once, their retries answered) never does.
	latStreak = 16

	// maxLatencyHosts bounds the hosts one Transport tracks.
	maxLatencyHosts = 1024
	// latIdle is how long a host goes unused before it may be forgotten
	// to make room for another.
	latIdle = 10 * time.Minute
)

// latBucket returns the bucket of a latency of d nanoseconds.
func latBucket(d int64) int {
	if d < 1<<latMinShift {
		return 0
	}
	e := bits.Len64(uint64(d)) - 1 // 2^e ≤ d < 2^(e+1)
	sub := int(uint64(d)>>(e-latSubShift)) & (1<<latSubShift - 1)
	i := (e-latMinShift)<<latSubShift | sub
	return min(i, latBuckets-1)
}

// latUpper returns the upper bound of bucket i, in nanoseconds: every
// latency counted in it is below.
func latUpper(i int) int64 {
	e := i>>latSubShift + latMinShift
	sub := int64(i & (1<<latSubShift - 1))
	return (1<<latSubShift + sub + 1) << (e - latSubShift)
}

// latWindow is one window of counts.
type latWindow struct {
	counts [latBuckets]atomic.Uint32
}

// hostLatency is one host's recent attempt latencies and the values learned
// from them. Its methods are safe for concurrent use.
type hostLatency struct {
	win  [2]latWindow
	cur  atomic.Uint32 // index of the current window
	n    atomic.Uint32 // samples in the current window
	born atomic.Int64  // when the current window started (mono)
	used atomic.Int64  // last sample, to the second (mono), for forgetting idle hosts
	mu   sync.Mutex    // one rotation or recomputation at a time

	ready   atomic.Bool  // enough samples for every learned value: recompute only every latRecompute samples
	hedge   atomic.Int64 // learned hedge delay in ns; 0: not enough samples
	timeout atomic.Int64 // learned attempt timeout in ns; 0: not enough samples

	// Evidence for the learned timeout beyond the histogram (see
	// LearnedTimeoutConfig): the longest recent successes, and whether
	// most recent attempts were cut or ended by their caller's deadline.
	// Kept per slot of latSlot, over the current and the previous slot.
	streak   atomic.Int64 // censored attempts since the last success
	since    atomic.Int64 // when the streak's first censored attempt ended (mono)
	slotHint atomic.Int64 // the current slot's index, for a lock-free check
	succHint atomic.Int64 // the current slot's longest success, for a lock-free check
	slot     int64        // guarded by mu, as are the fields below
	succMax  [2]int64     // longest success of the current and previous slot, ns
	suspend  [2]bool      // the slot saw a group of attempts mostly censored
	floor    int64        // the timeout's floor from succMax and suspend, ns
}

// latencies are the hosts a Transport tracks, and what it learns from them.
type latencies struct {
	hedge   *HedgeConfig          // normalised; nil when hedging is off
	timeout *LearnedTimeoutConfig // normalised; nil when off

	hosts sync.Map // host → *hostLatency
	n     atomic.Int32
	mu    sync.Mutex // adding a host when full, forgetting idle ones
}

// monoEpoch anchors mono: a monotonic clock read costs half a time.Now.
var monoEpoch = time.Now()

// mono returns a monotonic reading in nanoseconds.
func mono() int64 { return int64(time.Since(monoEpoch)) }

// host returns host's tracker, making one; nil when the table is full of
// hosts used recently.
func (l *latencies) host(host string) *hostLatency {
	if h, ok := l.hosts.Load(host); ok {
		return h.(*hostLatency)
	}
	return l.add(host, mono())
}

// add makes host's tracker, at mono time now, forgetting idle hosts when
// the table is full.
func (l *latencies) add(host string, now int64) *hostLatency {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.hosts.Load(host); ok {
		return h.(*hostLatency)
	}
	if l.n.Load() >= maxLatencyHosts {
		l.hosts.Range(func(k, v any) bool {
			if now-v.(*hostLatency).used.Load() > int64(latIdle) {
				l.hosts.Delete(k)
				l.n.Add(-1)
			}
			return true
		})
		if l.n.Load() >= maxLatencyHosts {
			return nil
		}
	}
	h := &hostLatency{}
	h.born.Store(now)
	h.used.Store(now)
	l.hosts.Store(host, h)
	l.n.Add(1)
	return h
}

// record counts one attempt of d nanoseconds, sent at mono time now.
func (l *latencies) record(h *hostLatency, d, now int64) {
	if h == nil || d < 0 {
		return
	}
	w := &h.win[h.cur.Load()&1]
	w.counts[latBucket(d)].Add(1)
	n := h.n.Add(1)
	if now-h.used.Load() > int64(time.Second) {
		h.used.Store(now)
	}
	if l.timeout != nil {
		if h.streak.Load() != 0 {
			h.streak.Store(0)
		}
		if d > h.succHint.Load() || now/int64(latSlot) != h.slotHint.Load() {
			l.evidence(h, d, false, now)
		}
	}
	if n >= latWindowSamples || now-h.born.Load() > int64(latWindowAge) {
		l.rotate(h, now)
	} else if n%latRecompute == 0 || !h.ready.Load() {
		l.recompute(h)
	}
}

// censored counts one attempt that took at least d nanoseconds but whose
// latency is unknown: a timeout cut it, or its caller's deadline ended it.
// It is not a sample of the histogram (a host stalling a share of its
// connections would raise its own timeout with every cut); it lengthens
// the streak of censored attempts (see LearnedTimeoutConfig), and rotates
// the windows when they are old, so a host answering nothing in time
// still forgets.
func (l *latencies) censored(h *hostLatency, d, now int64) {
	if h == nil || l.timeout == nil || d < 0 {
		return
	}
	if h.streak.Add(1) == 1 {
		h.since.Store(now)
	}
	l.evidence(h, d, true, now)
	if now-h.born.Load() > int64(latWindowAge) {
		l.rotate(h, now)
	}
}

// evidence moves h's slots to now, records a success of d ns (not cut)
// or judges the streak of censored attempts, and caches the timeout's
// floor.
func (l *latencies) evidence(h *hostLatency, d int64, cut bool, now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	if slot := now / int64(latSlot); slot != h.slot {
		if slot == h.slot+1 {
			h.succMax[1], h.suspend[1] = h.succMax[0], h.suspend[0]
		} else {
			h.succMax[1], h.suspend[1] = 0, false
		}
		h.succMax[0], h.suspend[0] = 0, false
		h.slot = slot
		h.slotHint.Store(slot)
		changed = true
	}
	if !cut && d > h.succMax[0] {
		h.succMax[0] = d
		changed = true
	}
	h.succHint.Store(h.succMax[0])
	if cut && h.streak.Load() >= latStreak && now-h.since.Load() >= h.timeout.Load() && !h.suspend[0] {
		h.suspend[0] = true
		h.streak.Store(0)
		changed = true
	}
	if !changed {
		return
	}
	floor := 2 * max(h.succMax[0], h.succMax[1])
	if h.suspend[0] || h.suspend[1] {
		floor = math.MaxInt64
	}
	if floor != h.floor {
		h.floor = floor
		l.recomputeLocked(h)
	}
}

// rotate clears the older window and makes it current.
func (l *latencies) rotate(h *hostLatency, now int64) {
	if !h.mu.TryLock() {
		return // another goroutine is at it
	}
	defer h.mu.Unlock()
	if h.n.Load() < latWindowSamples && now-h.born.Load() <= int64(latWindowAge) {
		return // rotated already
	}
	next := (h.cur.Load() + 1) & 1
	for i := range h.win[next].counts {
		h.win[next].counts[i].Store(0)
	}
	h.cur.Store(next)
	h.n.Store(0)
	h.born.Store(now)
	l.recomputeLocked(h)
}

// recompute caches the quantiles of h's counts, unless another goroutine
// is already doing it.
func (l *latencies) recompute(h *hostLatency) {
	if !h.mu.TryLock() {
		return
	}
	defer h.mu.Unlock()
	l.recomputeLocked(h)
}

// recomputeLocked caches the learned hedge delay and attempt timeout of h.
// h.mu must be held.
func (l *latencies) recomputeLocked(h *hostLatency) {
	counts, total := h.counts()
	ready := true
	if c := l.hedge; c != nil && c.Delay == 0 {
		var d int64
		if total >= uint64(c.MinSamples) {
			d = clampNs(quantile(&counts, total, c.Quantile), c.MinDelay, c.MaxDelay)
		} else {
			ready = false
		}
		h.hedge.Store(d)
	}
	if c := l.timeout; c != nil {
		var d int64
		if total >= uint64(c.MinSamples) {
			q := float64(quantile(&counts, total, c.Quantile)) * c.Multiplier
			d = clampNs(max(int64(min(q, math.MaxInt64/2)), h.floor), c.MinTimeout, c.MaxTimeout)
		} else {
			ready = false
		}
		h.timeout.Store(d)
	}
	h.ready.Store(ready)
}

// counts returns h's two windows added up, bucket by bucket, and their
// total.
func (h *hostLatency) counts() (counts [latBuckets]uint32, total uint64) {
	for i := range counts {
		c := h.win[0].counts[i].Load() + h.win[1].counts[i].Load()
		counts[i] = c
		total += uint64(c)
	}
	return counts, total
}

// quantile returns the upper bound of the bucket holding the q-quantile of
// counts, whose sum is total (> 0): the smallest bound that at least
// ⌈q·total⌉ samples are below.
func quantile(counts *[latBuckets]uint32, total uint64, q float64) int64 {
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, c := range counts {
		cum += uint64(c)
		if cum >= rank {
			return latUpper(i)
		}
	}
	return latUpper(latBuckets - 1)
}

func clampNs(d int64, lo, hi time.Duration) int64 {
	return min(max(d, int64(lo)), int64(hi))
}

// learnedHedge returns the hedge delay for h: the fixed one, or the learned
// one; 0 when there is none yet.
func (l *latencies) learnedHedge(h *hostLatency) time.Duration {
	if l.hedge.Delay > 0 {
		return l.hedge.Delay
	}
	if h == nil {
		return 0
	}
	return time.Duration(h.hedge.Load())
}

// learnedTimeout returns h's learned attempt timeout; 0 when there is none
// yet.
func (l *latencies) learnedTimeout(h *hostLatency) time.Duration {
	if l.timeout == nil || h == nil {
		return 0
	}
	return time.Duration(h.timeout.Load())
}
