package bench

import (
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/idempotency"
)

// The floor: rebound's four links (key, retry loop, budget, breaker),
// each doing on a healthy call only what no implementation of it can
// avoid, measured beside the libraries as the lowest overhead such a
// chain can reach on this machine:
//
//   - the key link copies a POST (a link must not modify the caller's
//     request) with its own header map holding a fresh UUIDv4 key
//     (idempotency.NewKeyV4, the cheapest generator at hand), and leaves
//     a GET alone;
//   - the retry loop counts the attempt (one atomic add), sends it and
//     judges the status;
//   - the budget reads the monotonic clock once (a sliding window needs
//     the time of the deposit; time.Since reads only that clock, where
//     time.Now reads the wall clock too, two reads) and adds one to the
//     current bucket;
//   - the breaker finds its host's state (a sync.Map keyed by the URL's
//     host, as written: no canonical form), loads it, sends, and adds one
//     to the host's success count.
//
// None of them reports to an observer, checks a setting, or handles a
// failure: a failure is returned as it came. It is a measuring stick, not
// a library.

func newFloor(base http.RoundTripper) http.RoundTripper {
	return &floorKeys{next: &floorLoop{next: &floorBudget{next: &floorBreaker{next: base}}}}
}

// floorKeys adds a generated key to a POST or PATCH without one.
type floorKeys struct{ next http.RoundTripper }

// floorKeyed is a request copy and its key's value slice, allocated
// together.
type floorKeyed struct {
	req http.Request
	val [1]string
}

func (l *floorKeys) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Method == http.MethodPost || req.Method == http.MethodPatch) && req.Header.Get("Idempotency-Key") == "" {
		k := &floorKeyed{req: *req}
		k.val[0] = idempotency.NewKeyV4()
		h := maps.Clone(req.Header)
		if h == nil {
			h = make(http.Header, 1)
		}
		h["Idempotency-Key"] = k.val[:]
		k.req.Header = h
		req = &k.req
	}
	return l.next.RoundTrip(req)
}

// floorLoop counts and sends one attempt, and judges its outcome.
type floorLoop struct {
	next     http.RoundTripper
	attempts atomic.Uint64
	failed   atomic.Uint64
}

func (l *floorLoop) RoundTrip(req *http.Request) (*http.Response, error) {
	l.attempts.Add(1)
	resp, err := l.next.RoundTrip(req)
	if err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		l.failed.Add(1) // a real loop would decide on a retry here
	}
	return resp, err
}

// floorBudget deposits the attempt into a ten-bucket window.
type floorBudget struct {
	next    http.RoundTripper
	buckets [10]atomic.Int64
}

// floorEpoch is the origin of the floor budget's clock.
var floorEpoch = time.Now()

func (l *floorBudget) RoundTrip(req *http.Request) (*http.Response, error) {
	now := time.Since(floorEpoch)
	l.buckets[uint64(now)/uint64(time.Second)%10].Add(1)
	return l.next.RoundTrip(req)
}

// floorBreaker gates by its host's state and counts the successes.
type floorBreaker struct {
	next  http.RoundTripper
	hosts sync.Map // URL host → *floorHost
}

type floorHost struct {
	open      atomic.Bool
	successes atomic.Uint64
}

func (l *floorBreaker) RoundTrip(req *http.Request) (*http.Response, error) {
	v, ok := l.hosts.Load(req.URL.Host)
	if !ok {
		v, _ = l.hosts.LoadOrStore(req.URL.Host, new(floorHost))
	}
	h := v.(*floorHost)
	if h.open.Load() {
		return nil, errServerFailure // never in a benchmark: nothing opens it
	}
	resp, err := l.next.RoundTrip(req)
	if err == nil && resp.StatusCode < 500 {
		h.successes.Add(1)
	}
	return resp, err
}
