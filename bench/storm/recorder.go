package storm

import (
	"sync"
	"time"
)

// Tick is the width of the Recorder's buckets.
const Tick = 100 * time.Millisecond

// bucket holds what happened during one Tick.
type bucket struct {
	// At the server, by arrival of the attempt (or end of its service).
	attempts, refused, rejected, served, wasted int64
	// At the clients: calls by their start, and successful calls by
	// their end.
	started, okByStart, okByEnd int64
	// Calls that failed without sending an attempt (refused by the
	// client's own breaker, budget or admission), by their start.
	local int64
	// Attempts sent by a client whose last call was refused locally
	// (its breaker or budget answered without sending), and the most
	// such clients seen at once.
	probes, openMax int64
}

// Recorder counts, per Tick of virtual time, what the server and the
// clients of one cell did. It is safe for concurrent use; the zero value
// is not usable: call newRecorder.
type Recorder struct {
	start time.Time

	mu      sync.Mutex
	buckets []bucket
	open    []bool // per client: its last call was refused locally
	nOpen   int64
	// Per client: calls started and attempts sent.
	calls, sends []int64
}

func newRecorder(start time.Time, horizon time.Duration, clients int) *Recorder {
	return &Recorder{
		start:   start,
		buckets: make([]bucket, int(horizon/Tick)+2),
		open:    make([]bool, clients),
		calls:   make([]int64, clients),
		sends:   make([]int64, clients),
	}
}

// at returns the bucket of instant t, the last one for instants past the
// horizon. r.mu is held.
func (r *Recorder) at(t time.Time) *bucket {
	i := int(t.Sub(r.start) / Tick)
	i = min(max(i, 0), len(r.buckets)-1)
	return &r.buckets[i]
}

// attempt, refused, rejected and served are called by the Server with
// its own lock held.
func (r *Recorder) attempt(t time.Time) {
	r.mu.Lock()
	r.at(t).attempts++
	r.mu.Unlock()
}

func (r *Recorder) refused(t time.Time) {
	r.mu.Lock()
	r.at(t).refused++
	r.mu.Unlock()
}

func (r *Recorder) rejected(t time.Time) {
	r.mu.Lock()
	r.at(t).rejected++
	r.mu.Unlock()
}

func (r *Recorder) served(t time.Time, gone bool) {
	r.mu.Lock()
	b := r.at(t)
	b.served++
	if gone {
		b.wasted++
	}
	r.mu.Unlock()
}

// sent notes an attempt leaving client id and reports nothing.
func (r *Recorder) sent(t time.Time, id int) {
	r.mu.Lock()
	r.sends[id]++
	if r.open[id] {
		b := r.at(t)
		b.probes++
		b.openMax = max(b.openMax, r.nOpen)
	}
	r.mu.Unlock()
}

// answered notes the outcome of an attempt of client id: a success
// closes the client's circuit as far as the recorder is concerned.
func (r *Recorder) answered(t time.Time, id int, ok bool) {
	if !ok {
		return
	}
	r.mu.Lock()
	if r.open[id] {
		r.open[id] = false
		r.nOpen--
	}
	r.mu.Unlock()
}

// call notes a call of client id that started at start and ended now,
// successfully or not, after sending attempts attempts.
func (r *Recorder) call(start, end time.Time, id int, ok bool, attempts int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.at(start)
	b.started++
	r.calls[id]++
	if ok {
		b.okByStart++
		r.at(end).okByEnd++
	}
	if !ok && attempts == 0 {
		b.local++
	}
	switch {
	case !ok && attempts == 0 && !r.open[id]:
		r.open[id] = true
		r.nOpen++
		e := r.at(end)
		e.openMax = max(e.openMax, r.nOpen)
	case ok && r.open[id]:
		r.open[id] = false
		r.nOpen--
	}
	if r.nOpen > 0 {
		e := r.at(end)
		e.openMax = max(e.openMax, r.nOpen)
	}
}

// snapshot copies the buckets.
func (r *Recorder) snapshot() []bucket {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bucket(nil), r.buckets...)
}

// maxClientAmp returns the highest attempts per call of the clients that
// made at least min calls, and how many such clients there were.
func (r *Recorder) maxClientAmp(min int64) (amp float64, clients int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, n := range r.calls {
		if n >= min {
			clients++
			amp = max(amp, float64(r.sends[i])/float64(n))
		}
	}
	return amp, clients
}
