package breaker

import "sync/atomic"

// A bucket of the sliding window is one 64-bit word, updated with
// compare-and-swap so that recording an outcome takes no lock:
//
//	bits 63..40  epoch: the bucket's index, modulo 2^24
//	bits 39..20  failures in the bucket
//	bits 19..0   successes in the bucket
//
// A word whose epoch is not the current bucket's holds an older bucket's
// counts; the first outcome of a new bucket resets them. An outcome that
// arrives with an index older than the word's (its goroutine was held up
// between reading the clock and adding) is counted in the newer bucket. Counts saturate at
// 2^20-1 (over a million calls per bucket to one host), which keeps the
// failure rate meaningful. With the default 1 s buckets the epoch wraps
// after 194 days; a bucket untouched for exactly a multiple of that would
// briefly count as current, which is harmless.
const (
	countBits = 20
	countMax  = 1<<countBits - 1
	epochBits = 24
	epochMask = 1<<epochBits - 1
	addSlack  = 1 << 12 // adds that may race past the saturation check
)

// pack builds a bucket word.
func pack(epoch, fails, succs uint64) uint64 {
	return (epoch&epochMask)<<(2*countBits) | fails<<countBits | succs
}

// unpack splits a bucket word.
func unpack(w uint64) (epoch, fails, succs uint64) {
	return w >> (2 * countBits), w >> countBits & countMax, w & countMax
}

// window counts successes and failures over the last len(buckets) time
// buckets, in O(buckets) memory whatever the call rate. It is safe for
// concurrent use; the zero value (no buckets) counts nothing.
type window struct {
	buckets []atomic.Uint64
}

// newWindow returns a window of n buckets.
func newWindow(n int) window {
	return window{buckets: make([]atomic.Uint64, n)}
}

// add counts one outcome in bucket idx.
func (w *window) add(idx uint64, failed bool) {
	n := uint64(len(w.buckets))
	if n == 0 {
		return
	}
	slot := &w.buckets[idx%n]
	epoch := idx & epochMask
	// The common case, a bucket already current and far from saturation,
	// is one atomic add, which never retries under contention. An add
	// racing with the bucket's reset lands in the new bucket: a call
	// counted a bucket late, which is harmless.
	if e, f, s := unpack(slot.Load()); e == epoch && f < countMax-addSlack && s < countMax-addSlack {
		if failed {
			slot.Add(1 << countBits)
		} else {
			slot.Add(1)
		}
		return
	}
	for {
		old := slot.Load()
		e, f, s := unpack(old)
		ep := epoch
		switch ahead := (e - epoch) & epochMask; {
		case ahead == 0:
		case ahead < epochMask/2:
			// A newer bucket owns the slot: this outcome is reported a
			// whole window late (its goroutine read idx, then waited).
			// Count it in that bucket rather than wipe the bucket.
			ep = e
		default:
			f, s = 0, 0 // an older bucket's counts: the slot is ours
		}
		if failed {
			f = min(f+1, countMax)
		} else {
			s = min(s+1, countMax)
		}
		next := pack(ep, f, s)
		if next == old || slot.CompareAndSwap(old, next) {
			return
		}
	}
}

// sum returns the calls and failures of the window that ends with bucket
// idx: that bucket and the len(buckets)-1 before it. Buckets written for a
// later index by a racing goroutine are left out.
func (w *window) sum(idx uint64) (calls, fails int64) {
	n := uint64(len(w.buckets))
	epoch := idx & epochMask
	for i := range w.buckets {
		e, f, s := unpack(w.buckets[i].Load())
		if (epoch-e)&epochMask < n {
			calls += int64(f + s)
			fails += int64(f)
		}
	}
	return calls, fails
}
