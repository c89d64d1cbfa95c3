package rebound

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
)

// maxIsolated bounds the hosts isolated at once, and maxIsolation the
// time one isolation lasts: an isolation always ends, and the table of
// isolated hosts never grows without bound.
const (
	maxIsolated  = 1024
	maxIsolation = 24 * time.Hour
)

// ErrIsolated is matched by the error of a call refused because its host
// is isolated (Transport.Isolate), with the *IsolatedError it carries.
// Such an error also matches classify.ErrNotSent and transport.ErrRefused:
// nothing was sent.
var ErrIsolated = errors.New("rebound: host isolated by an operator")

// IsolatedError is the error an isolated host's gate refuses an attempt
// with (see Transport.Isolate); the retry loop wraps it in its
// *transport.Error. It matches ErrIsolated and classify.ErrNotSent. The
// zero value reads as an isolation of an unnamed host.
type IsolatedError struct {
	// Host is the canonical URL host.
	Host string
	// Until is when the isolation ends.
	Until time.Time
	// RetryIn is the time left then.
	RetryIn time.Duration
}

// Error returns "rebound: api.example.com isolated by an operator for
// another 4m0s".
func (e *IsolatedError) Error() string {
	return fmt.Sprintf("rebound: %s isolated by an operator for another %v", e.Host, e.RetryIn.Round(time.Millisecond))
}

// Is reports whether target is ErrIsolated or classify.ErrNotSent.
func (e *IsolatedError) Is(target error) bool {
	return target == ErrIsolated || target == classify.ErrNotSent
}

// isolation is one isolated host.
type isolation struct {
	until time.Time
}

// Isolate makes every attempt to host fail fast, unsent, for d: an
// operator's switch to take a host out of traffic during an incident,
// whatever its breaker says. The retry loop takes the refusal as any
// gate's: the call ends at once with a *transport.Error that matches
// ErrIsolated, transport.ErrRefused and classify.ErrNotSent and carries
// an *IsolatedError; Stats counts it under GateIsolated, and the log and
// Observer.Retry report it as a refusal. A call in flight whose retry
// meets the isolation ends with the outcome of its last attempt.
//
// host is a URL host as Stats reports it ("api.example.com",
// "127.0.0.1:8080"), in any spelling of case, trailing dot or Unicode;
// it is not a pattern. A later Isolate of the same host replaces the
// time; a d of zero or less lifts the isolation. d is at most 24 hours,
// and at most 1024 hosts are isolated at once, so an isolation always
// ends and the table stays small. The isolation survives Reload, and
// Reset lifts it. The isolation, its lifting and its end are reported to
// Observer.Operator (and logged by LogObserver).
//
// While no host is isolated the check costs an attempt one atomic load;
// while some are, one map lookup.
func (t *Transport) Isolate(host string, d time.Duration) error {
	name, _, wildcard, err := canonicalPattern(host)
	if err != nil || wildcard || name == "" {
		if err == nil {
			err = errors.New("a host, not a pattern")
		}
		return fmt.Errorf("rebound: Isolate(%q): %w", host, err)
	}
	if d > maxIsolation {
		return fmt.Errorf("rebound: Isolate(%q): %v is longer than the longest isolation (%v)", host, d, maxIsolation)
	}
	host = hostname.Canonical(host)
	t.init()
	t.mu.Lock()
	l := t.live.Load()
	var ev OperatorEvent
	switch {
	case d <= 0:
		if _, ok := l.iso[host]; !ok {
			t.mu.Unlock()
			return nil
		}
		t.storeIso(l, host, nil)
		ev = OperatorEvent{Action: ActionLift, Host: host, Detail: "isolation lifted by the operator"}
	default:
		if _, ok := l.iso[host]; !ok && len(l.iso) >= maxIsolated {
			t.mu.Unlock()
			return fmt.Errorf("rebound: Isolate(%q): %d hosts are isolated already, the most at once", host, maxIsolated)
		}
		until := time.Now().Add(d)
		t.storeIso(l, host, &isolation{until: until})
		ev = OperatorEvent{Action: ActionIsolate, Host: host, Until: until,
			Detail: "isolated by the operator for " + d.String()}
	}
	t.mu.Unlock()
	t.operator(ev)
	return nil
}

// storeIso replaces l by a configuration whose isolation of host is is
// (nil: none), dropping isolations that have ended. t.mu must be held.
func (t *Transport) storeIso(l *live, host string, is *isolation) {
	now := time.Now()
	m := maps.Clone(l.iso)
	if m == nil {
		m = make(map[string]*isolation)
	}
	maps.DeleteFunc(m, func(_ string, v *isolation) bool { return !now.Before(v.until) })
	if is == nil {
		delete(m, host)
	} else {
		m[host] = is
	}
	if len(m) == 0 {
		m = nil
	}
	nl := *l
	nl.iso = m
	t.live.Store(&nl)
}

// isolationGate is the link of every chain, under the retry loop, that
// refuses the attempts to isolated hosts.
type isolationGate struct {
	t    *Transport
	next http.RoundTripper
}

func (g isolationGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if l := g.t.live.Load(); l != nil && l.iso != nil && req != nil && req.URL != nil {
		host := hostname.FromURL(req.URL)
		if is, ok := l.iso[host]; ok {
			now := time.Now()
			if now.Before(is.until) {
				if req.Body != nil {
					req.Body.Close()
				}
				return nil, &IsolatedError{Host: host, Until: is.until, RetryIn: is.until.Sub(now)}
			}
			g.t.expire(host, is)
		}
	}
	return g.next.RoundTrip(req)
}

// expire drops host's isolation is, which has ended, and reports it.
func (t *Transport) expire(host string, is *isolation) {
	t.mu.Lock()
	l := t.live.Load()
	if l.iso[host] != is {
		t.mu.Unlock()
		return // lifted, renewed or expired by another call
	}
	t.storeIso(l, host, nil)
	t.mu.Unlock()
	t.operator(OperatorEvent{Action: ActionExpire, Host: host, Until: is.until, Detail: "isolation ended"})
}

// Reset forgets what the Transport learned of host, in the chain of its
// policy: it closes its circuit breaker and clears its evidence, drops
// its own retry budget and throttle (a budget shared by every host of a
// policy is left alone), clears its admission (pauses, paces, quotas;
// calls waiting for a turn get it at once), forgets its learned latency,
// and lifts its isolation. Calls in flight finish as they started.
// It reports what it reset to Observer.Operator and returns its names
// ("breaker", "budget", "admission", "latency", "isolation"), empty when
// the host had no state. host is a URL host as Isolate takes it.
func (t *Transport) Reset(host string) ([]string, error) {
	name, _, wildcard, err := canonicalPattern(host)
	if err != nil || wildcard || name == "" {
		if err == nil {
			err = errors.New("a host, not a pattern")
		}
		return nil, fmt.Errorf("rebound: Reset(%q): %w", host, err)
	}
	host = hostname.Canonical(host)
	t.init()
	t.mu.Lock()
	l := t.live.Load()
	c := l.chainFor(host)
	var reset []string
	if c.breaker != nil && c.breaker.Reset(host) {
		reset = append(reset, "breaker")
	}
	if c.budget != nil && c.budget.Reset(host) {
		reset = append(reset, "budget")
	}
	if c.retry != nil {
		keys, lat := c.retry.Reset(host)
		if keys > 0 {
			reset = append(reset, "admission")
		}
		if lat {
			reset = append(reset, "latency")
		}
	}
	if _, ok := l.iso[host]; ok {
		t.storeIso(l, host, nil)
		reset = append(reset, "isolation")
	}
	t.mu.Unlock()
	detail := "nothing to reset"
	if len(reset) > 0 {
		detail = "state forgotten by the operator"
	}
	t.operator(OperatorEvent{Action: ActionReset, Host: host, Pattern: c.pattern, Reset: reset, Detail: detail})
	return reset, nil
}

// operator reports ev to the observers in force.
func (t *Transport) operator(ev OperatorEvent) {
	if o := t.obs.Load(); o != nil && o.Operator != nil {
		o.Operator(ev)
	}
}
