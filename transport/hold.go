package transport

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
)

// A host hold is the loop's single mechanism for a server's wait hint.
//
// A response with a retryable status (429, 503, ... in the classifier's
// set) that carries a wait hint the loop honours (classify.WaitHint, at
// most MaxRetryAfter) says "alive, slow down". It holds its host: until the
// hinted instant no attempt of this Transport goes to that host, neither
// the retry of the call that received it nor the first attempt of any other
// call. A held attempt whose context allows it waits until the instant plus
// a random spread (HintSpread: up to a tenth of the wait, at least
// BaseDelay), so that held calls do not all fire in the same millisecond;
// one whose deadline ends sooner returns at once, without sending, with the
// last response it got or a *HoldError. A queue built up over a long hold
// is let go in windows of that spread, ten attempts a window (see
// releaseBatch), not all at once.
//
// The retry of the call that received the hint is just one of the held
// attempts: its wait is the host's hold, which another response may have
// extended, not a second timer of its own. A hint over MaxRetryAfter holds
// nothing: the loop ends and hands the response to the caller, as before.

// ErrHeld is matched, with errors.Is, by every *HoldError.
var ErrHeld error = &classify.NotSentError{Msg: "transport: host held by the server's wait hint"}

// HoldError is the error of a call refused, before anything was sent,
// because the server asked this Transport to wait (a host hold) longer than
// the call's deadline allows. It matches ErrHeld and classify.ErrNotSent.
// The zero value reads as a hold of an unnamed host.
type HoldError struct {
	// Host is the held host ("api.example.com:8443").
	Host string
	// Until is when the host accepts requests again.
	Until time.Time
	// Paced is true when the wait is the call's turn in the host's quota
	// (RateLimit or X-RateLimit-Remaining headers, see Config.DisablePacing)
	// rather than a wait hint.
	Paced bool
}

// Error returns a message such as "transport: host api.example.com held by
// the server's wait hint until 12:00:01.5 (1.2s from now)".
func (e *HoldError) Error() string {
	msg := "transport: host " + e.Host + " held by the server's wait hint"
	if e.Paced {
		msg = "transport: host " + e.Host + " paced by the server's rate-limit quota"
	}
	if !e.Until.IsZero() {
		msg += " until " + e.Until.Format("15:04:05.000") + " (" + time.Until(e.Until).Round(time.Millisecond).String() + " from now)"
	}
	return msg
}

// Is reports whether target is ErrHeld or classify.ErrNotSent.
func (e *HoldError) Is(target error) bool {
	return target == ErrHeld || target == classify.ErrNotSent
}

// maxHeldHosts bounds the hosts a Transport remembers holds for. When it is
// full of live holds, a new host's hold is not recorded: the call that
// received the hint still waits for it, other calls are not held (as
// without this mechanism).
const maxHeldHosts = 4096

// holds is the set of held hosts of one Transport. With no live hold, the
// check on every attempt is one atomic load.
type holds struct {
	n  atomic.Int32 // number of entries in m; 0 is the fast path
	mu sync.Mutex
	m  map[string]*heldHost
}

// heldHost is one host's hold.
type heldHost struct {
	end     time.Time // when the hold ends
	tickets int       // waits taken on this hold, for the release order
}

// releaseBatch is how many held attempts are released per spread window
// (see HintSpread) when a hold ends: the k-th attempt to wait goes in window
// k/releaseBatch, so a queue of calls built up over a long hold is let go
// at about releaseBatch per window (100 per second with the defaults)
// rather than all within one window.
const releaseBatch = 10

// until returns the end of host's hold when it is after now, and a ticket:
// how many waits were taken on that hold before this one. It forgets holds
// that have ended.
func (h *holds) until(host string, now time.Time) (end time.Time, ticket int, ok bool) {
	if h.n.Load() == 0 {
		return time.Time{}, 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[host]
	if e == nil {
		return time.Time{}, 0, false
	}
	if !e.end.After(now) {
		delete(h.m, host)
		h.n.Store(int32(len(h.m)))
		return time.Time{}, 0, false
	}
	ticket = e.tickets
	e.tickets++
	return e.end, ticket, true
}

// held reports whether host is held at now, taking no ticket.
func (h *holds) held(host string, now time.Time) bool {
	if h.n.Load() == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.m[host]
	return e != nil && e.end.After(now)
}

// hold extends host's hold to end (a hold is never shortened) and returns
// the end of the hold now in force.
func (h *holds) hold(host string, end, now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]*heldHost)
	}
	if cur := h.m[host]; cur != nil {
		if cur.end.After(end) {
			return cur.end
		}
		cur.end = end
		return end
	}
	if len(h.m) >= maxHeldHosts {
		for k, e := range h.m {
			if !e.end.After(now) {
				delete(h.m, k)
			}
		}
		if len(h.m) >= maxHeldHosts {
			return end
		}
	}
	h.m[host] = &heldHost{end: end}
	h.n.Store(int32(len(h.m)))
	return end
}

// releaseDelay is the wait, past the end of a hold of wait, of the held
// attempt with the given ticket: a random spread within its window.
func releaseDelay(wait, base time.Duration, ticket int, r float64) time.Duration {
	window := max(wait/10, base)
	return time.Duration(ticket/releaseBatch)*window + HintSpread(wait, base, r)
}

// holdKey is the host a hold applies to: the request URL's canonical host
// (see internal/hostname), with its port unless it is the scheme's default.
func holdKey(req *http.Request) string {
	return hostname.FromURL(req.URL)
}

// holdable reports whether a response with status code may hold its host:
// a status the classifier retries, or 429.
func (c *Config) holdable(code int) bool {
	if code == http.StatusTooManyRequests {
		return true
	}
	set := c.Classifier.Retryable
	if set == nil {
		set = &classify.DefaultRetryable
	}
	return set.Has(code)
}
