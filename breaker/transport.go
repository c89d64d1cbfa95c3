package breaker

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/rebound-http/rebound/classify"
)

// Transport is a gate http.RoundTripper with one Breaker per host. An
// attempt to a host whose breaker is open fails fast with *OpenError,
// which matches classify.ErrNotSent, without calling the next transport;
// any other attempt goes to the next transport and its outcome, judged by
// classify.ServerHealth, feeds the breaker. Backpressure is not failure: a
// response with a wait hint (Retry-After, RateLimit, X-RateLimit-Reset),
// whatever its status, never counts against the host, so a rate limiter
// answering 503 + Retry-After cannot trip or hold open its breaker.
//
// In a rebound chain it sits inside the retry loop, so every attempt meets
// it and a breaker that opens mid-call ends the loop, which then returns
// the previous attempt's real outcome. Alone:
//
//	client := &http.Client{Transport: breaker.NewTransport(nil, breaker.Config{})}
//
// Hosts are tracked in a bounded registry (Config.MaxHosts, default
// 10,000), so a crawler's millions of hosts never grow it. One tracked host
// costs about 300 bytes of heap (measured by TestMemoryPerHost over 10,000
// hosts: breaker, generation with its score word, name, the host as the
// URL wrote it and hash-table slot), about 3 MB at the default bound.
//
// For a healthy host the gate costs two string comparisons (the host and
// scheme as written, against the breaker a small memo kept for them) or,
// for a host written a new way, a lock-free hash lookup of its canonical
// form; then an atomic load, a monotonic clock read and an atomic load of
// the score word, which it writes only when the outcome changes it, and no
// allocation. Transport never modifies the request.
//
// The zero value is ready to use, with the default Config in front of a
// go-cleanhttp pooled transport. A Transport is safe for concurrent use.
type Transport struct {
	st   atomic.Pointer[tstate]
	init sync.Mutex // serialises the zero value's lazy setup
}

// tstate is a Transport's fixed parts.
type tstate struct {
	next http.RoundTripper
	reg  *registry
}

// NewTransport returns a Transport that sends the attempts it allows to
// next, with the breaker settings of cfg. A nil next means a go-cleanhttp
// pooled transport, made once here.
func NewTransport(next http.RoundTripper, cfg Config) *Transport {
	t := &Transport{}
	t.st.Store(newTState(next, cfg))
	return t
}

// newTState normalises cfg and next.
func newTState(next http.RoundTripper, cfg Config) *tstate {
	if next == nil {
		next = cleanhttp.DefaultPooledTransport()
	}
	return &tstate{next: next, reg: newRegistry(newSettings(cfg))}
}

// state returns the Transport's fixed parts, setting up a zero Transport.
func (t *Transport) state() *tstate {
	if s := t.st.Load(); s != nil {
		return s
	}
	t.init.Lock()
	defer t.init.Unlock()
	if s := t.st.Load(); s != nil {
		return s
	}
	s := newTState(nil, Config{})
	t.st.Store(s)
	return s
}

// Next returns the transport that allowed attempts are sent to.
func (t *Transport) Next() http.RoundTripper { return t.state().next }

// RoundTrip sends req to the next transport unless req's host has an open
// breaker, in which case it returns a nil response and an *OpenError. A
// nil request, or one without a URL, gets an error and is not sent. It
// never returns both a response and an error: when the next transport
// does, the response is closed and the error returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, unread)
}

// RoundTripAt is RoundTrip for a caller that has just read the clock, at
// the attempt's start: the breaker counts a success at now instead of
// reading the clock again when it comes back. A gate in front of the
// breaker that reads the clock anyway (budget.Transport) calls it, so that
// a healthy attempt reads the clock once in the chain, not once per gate;
// a clock read costs tens of nanoseconds on many virtual machines. A
// success's time only places it in the trip rule's window (a sixteenth of
// Config.Window wide) and orders it against other outcomes, so the start
// of an attempt serves as well as its end. A failure is still counted at
// its end, read from the clock (an attempt that hung for a Window finds
// its host quiet, as with RoundTrip), and so is an open breaker's probe.
// now must come from the monotonic clock (time.Now, not a time parsed or
// built from a date).
func (t *Transport) RoundTripAt(req *http.Request, now time.Time) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errNilRequest
	}
	return t.roundTrip(req, max(now.Sub(t.state().reg.set.origin), 0))
}

// roundTrip is RoundTrip counting the outcome at at (since the settings'
// origin), or at a clock read of its own when at is unread.
func (t *Transport) roundTrip(req *http.Request, at time.Duration) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errNilRequest
	}
	s := t.state()
	if req.Context().Err() != nil {
		// Over before it was sent (the caller's deadline passed during a
		// wait): whatever the base says of it says nothing of the server.
		return pass(s.next, req)
	}
	b := s.breakerFor(req)
	if b == nil {
		return pass(s.next, req)
	}
	g, err := b.allow()
	if err != nil {
		return nil, err
	}
	since := g.mark()
	var resp *http.Response
	stage := sending
	defer func() {
		switch stage {
		case sending: // the next transport panicked: free a probe slot
			b.record(g, classify.Neutral)
		case recording: // OnStateChange panicked: nobody will read resp
			closeResponse(resp)
		}
	}()
	resp, err = s.next.RoundTrip(req)
	stage = recording
	if resp != nil && err != nil {
		// A gate never returns both: http.Client would drop the
		// response without closing it. The error says what happened.
		closeResponse(resp)
		resp = nil
	}
	b.recordAt(g, classify.ServerHealth(req, resp, err), since, at)
	stage = returned
	return resp, err
}

// Stages of Transport.RoundTrip, for its deferred clean-up.
const (
	sending = iota
	recording
	returned
)

// pass sends req to next untracked, never returning both a response and
// an error.
func pass(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := next.RoundTrip(req)
	if resp != nil && err != nil {
		closeResponse(resp)
		resp = nil
	}
	return resp, err
}

// closeResponse closes resp's body, if there is one.
func closeResponse(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
}

// breakerFor returns the breaker of req's host, or nil when req is not to
// be tracked: no host or an empty Config.Key, or a registry full of open
// breakers.
func (s *tstate) breakerFor(req *http.Request) *Breaker {
	var k hostKey
	if f := s.reg.set.key; f != nil {
		k.host = f(req)
		if k.host == "" {
			return nil
		}
		return s.reg.get(k)
	}
	return s.reg.forURL(req.URL)
}

// Snapshot returns the state and counts of every tracked host, sorted by
// host. It is a copy: changing it changes nothing.
func (t *Transport) Snapshot() []HostState { return t.state().reg.snapshot() }

// Len returns the number of tracked hosts, at most Config.MaxHosts.
func (t *Transport) Len() int { return t.state().reg.len() }

// Untracked returns how many attempts went through untracked because the
// registry was full of open or probing breakers that could not be evicted.
// Such attempts are sent (the gate fails open) but not counted.
func (t *Transport) Untracked() uint64 { return t.state().reg.untracked.Load() }

// CloseIdleConnections closes the idle connections of the next transport,
// if it has such a method.
func (t *Transport) CloseIdleConnections() {
	type closer interface{ CloseIdleConnections() }
	if c, ok := t.state().next.(closer); ok {
		c.CloseIdleConnections()
	}
}
