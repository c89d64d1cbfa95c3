package budget

import "time"

// slots is the number of time buckets a window is divided into. Ten
// buckets, like Finagle's windowed adder, make a window forget its oldest
// tenth at a time: a 10 s window slides by 1 s.
const slots = 10

// window counts two quantities, a and b, over a sliding window of time made
// of slots buckets of equal width. Memory is constant: an event is added to
// the bucket of its instant, and a bucket is cleared, and its counts taken
// off the running sums, when time moves past the window that contained it.
//
// Buckets are aligned on multiples of the width since the Unix epoch, so
// the sums at instant t cover the bucket containing t and the slots-1 before
// it: between width·(slots-1) and width·slots of history.
//
// An instant earlier than the newest bucket seen (a concurrent caller that
// read the clock a little before another) is counted in the newest bucket,
// so sums never grow in a bucket that was already forgotten.
//
// The zero value is not usable: set width first. A window is not safe for
// concurrent use; its owner holds a lock around every call.
type window struct {
	width int64 // bucket width in nanoseconds, > 0
	// head is the index (instant / width) of the newest bucket, cur its
	// slot, and end the Unix nanosecond at which it ends. The fast path
	// of advance is a comparison with end, no division.
	head    int64
	cur     int // slot(head)
	end     int64
	started bool

	a, b       [slots]int64
	sumA, sumB int64
}

// newWindow returns a window of the given total length (≥ slots ns).
func newWindow(length time.Duration) window {
	w := int64(length) / slots
	if w < 1 {
		w = 1
	}
	return window{width: w}
}

// length returns the window's total length.
func (w *window) length() time.Duration { return time.Duration(w.width * slots) }

// advance moves the window to instant now (Unix nanoseconds), forgetting
// the buckets that fell out of it, and returns the slot of now's bucket.
func (w *window) advance(now int64) int {
	if now < w.end && w.started {
		// Now, or a little before now: the newest bucket.
		return w.cur
	}
	e := floorDiv(now, w.width)
	if !w.started || e-w.head >= slots {
		w.a, w.b = [slots]int64{}, [slots]int64{}
		w.sumA, w.sumB = 0, 0
		w.started = true
	} else {
		for i := w.head + 1; i <= e; i++ {
			s := slot(i)
			w.sumA -= w.a[s]
			w.sumB -= w.b[s]
			w.a[s], w.b[s] = 0, 0
		}
	}
	w.head = e
	w.cur = slot(e)
	w.end = (e + 1) * w.width
	return w.cur
}

// add counts da and db at instant now.
func (w *window) add(now int64, da, db int64) {
	s := w.advance(now)
	w.a[s] += da
	w.b[s] += db
	w.sumA += da
	w.sumB += db
}

// sums returns the totals of a and b over the window ending at now.
func (w *window) sums(now int64) (a, b int64) {
	w.advance(now)
	return w.sumA, w.sumB
}

// slot returns the array index of bucket e.
func slot(e int64) int {
	s := e % slots
	if s < 0 {
		s += slots
	}
	return int(s)
}

// floorDiv returns ⌊n / d⌋ for d > 0, also for negative n (instants before
// 1970), so that buckets stay contiguous across zero.
func floorDiv(n, d int64) int64 {
	q := n / d
	if n%d < 0 {
		q--
	}
	return q
}
