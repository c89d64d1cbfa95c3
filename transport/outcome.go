package transport

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"
)

// Outcome reports how the retry loop ended on resp, a response it returned
// with a nil error: the number of attempts sent, and why the loop stopped
// there, as one of the stop sentinels (errors.Is(stop, ErrHintOverCap),
// ErrAttemptsExhausted, ErrDeadline, ErrBodyNotReplayable,
// ErrResponseTooLarge, ErrFinal), or nil when the last attempt succeeded.
// A stop that is a refusal matches ErrRefused and the gate's own error
// (errors.Is(stop, budget.ErrExhausted), *breaker.OpenError, ErrHeld):
//
//	resp, err := client.Do(req)
//	if err == nil {
//		if n, stop, ok := transport.Outcome(resp); ok && stop != nil {
//			log.Printf("gave up after %d attempts: %v", n, stop) // "transport: server wait over cap"
//		}
//	}
//
// ok is false when the loop handed back its first attempt's response as it
// came (a success, or a status it does not retry, such as 404): one
// attempt, nothing given up. A response that would have been retried but
// for its method (a POST answered 503, with no idempotency key that
// licenses a repeat) is reported with a stop that matches ErrFinal and
// reads WhyNotRepeated or WhyNotRepeatedKey (see Error.Why). Such responses, the healthy path, cost
// nothing; ok is also false for a response that did not come from a retry
// loop. Outcome needs no Observer, and it works whatever wraps the body
// (http.Client.Timeout, decompression, tracing middleware): the loop
// records the outcome in a table keyed by the *http.Response itself, held
// weakly, so an entry is dropped when its response is garbage collected.
// Outcome is safe for concurrent use.
func Outcome(resp *http.Response) (attempts int, stop error, ok bool) {
	if resp == nil || outcomes.n.Load() == 0 {
		return 0, nil, false
	}
	key := weak.Make(resp)
	outcomes.mu.Lock()
	rec, ok := outcomes.m[key]
	outcomes.mu.Unlock()
	return rec.attempts, rec.stop, ok
}

// outcomes is the table behind Outcome: one entry per live response that
// the loop gave up on or retried. With no entry, Outcome costs one atomic
// load.
var outcomes struct {
	n  atomic.Int64 // len(m)
	mu sync.Mutex
	m  map[weak.Pointer[http.Response]]outcomeRecord
}

type outcomeRecord struct {
	attempts int
	stop     error
}

// remember records the outcome of the call that returns resp. The entry
// goes when resp is collected.
func remember(resp *http.Response, attempts int, stop error) {
	key := weak.Make(resp)
	outcomes.mu.Lock()
	defer outcomes.mu.Unlock()
	if outcomes.m == nil {
		outcomes.m = make(map[weak.Pointer[http.Response]]outcomeRecord)
	}
	if _, dup := outcomes.m[key]; !dup {
		// A response handed back by nested loops is recorded once per
		// loop; the outermost, last, wins.
		outcomes.n.Add(1)
		runtime.AddCleanup(resp, forget, key)
	}
	outcomes.m[key] = outcomeRecord{attempts: attempts, stop: stop}
}

// forget drops the entry of a collected response.
func forget(key weak.Pointer[http.Response]) {
	outcomes.mu.Lock()
	if _, ok := outcomes.m[key]; ok {
		delete(outcomes.m, key)
		outcomes.n.Add(-1)
	}
	outcomes.mu.Unlock()
}

// stopOf returns the error Outcome reports for stop: its sentinel, or,
// when refusal is set, the refusal, matching ErrRefused, or, when why is
// set, the sentinel saying why.
func stopOf(stop, why string, refusal error) error {
	if refusal != nil {
		return &refusedStop{stop: stop, refusal: refusal}
	}
	if why != "" {
		return &whyStop{sentinel: stopSentinel(stop), why: why}
	}
	return stopSentinel(stop)
}

// whyStop is the stop of a response the loop gave up on for a reason its
// sentinel does not say (see Error.Why): it reads "transport: " + why and
// matches the sentinel.
type whyStop struct {
	sentinel error
	why      string
}

func (s *whyStop) Error() string { return "transport: " + s.why }

func (s *whyStop) Unwrap() error { return s.sentinel }

// refusedStop is the stop of a response returned because a gate or a
// host hold refused the next attempt. It matches ErrRefused and what the
// refusal matches, except classify.ErrNotSent: the response was sent.
type refusedStop struct {
	stop    string
	refusal error
}

func (s *refusedStop) Error() string { return "transport: " + s.stop + ": " + s.refusal.Error() }

func (s *refusedStop) Unwrap() []error { return []error{ErrRefused, sentRefusal{s.refusal}} }
