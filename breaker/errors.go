package breaker

import (
	"errors"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// ErrOpen is matched, with errors.Is, by every *OpenError. It matches
// classify.ErrNotSent itself.
var ErrOpen error = &classify.NotSentError{Msg: "breaker: circuit open"}

// errNilRequest is returned by Transport.RoundTrip for a nil request or a
// request without a URL, without calling the next transport.
var errNilRequest = errors.New("breaker: nil request or request URL")

// OpenError is the refusal of an attempt by an open or half-open breaker.
// Nothing was sent: it matches classify.ErrNotSent (so a retry loop stops
// and returns the previous attempt's outcome) and ErrOpen. The zero value
// reads as a refusal for an unnamed host with a probe due now.
type OpenError struct {
	// Host is the breaker's name: for a Transport, the canonical URL host
	// ("api.example.com", "127.0.0.1:8080"; see Config.Key) or the
	// Config.Key of the request.
	Host string
	// State is Open, or HalfOpen when the probe slots are taken.
	State State
	// RetryIn is the time until the breaker lets a probe through. It is
	// zero when half-open: a slot frees when a probe in flight ends.
	RetryIn time.Duration
}

// Error returns "breaker: circuit open for HOST, next probe in D", or
// "breaker: circuit half-open for HOST, probe in flight".
func (e *OpenError) Error() string {
	if e.State == HalfOpen {
		return "breaker: circuit half-open for " + e.Host + ", probe in flight"
	}
	return "breaker: circuit open for " + e.Host + ", next probe in " + e.RetryIn.Round(time.Millisecond).String()
}

// Is reports whether target is ErrOpen or classify.ErrNotSent.
func (e *OpenError) Is(target error) bool {
	return target == ErrOpen || target == classify.ErrNotSent
}

// StateChange describes one state change of a breaker, for
// Config.OnStateChange. The zero value describes no change.
type StateChange struct {
	// Host is the breaker's name (see OpenError.Host).
	Host string
	// From and To are the states before and after the change.
	From, To State
	// Reason says why, as a short human-readable phrase: "5 consecutive
	// failures", "failure rate 63% of 40 calls" (either may end with
	// ", Retry-After 30s" when a 503 asked for a longer wait), "open time
	// elapsed", "probe succeeded", "probe failed" or "probe unanswered
	// after 1m0s" (see Config.HalfOpenProbes).
	Reason string
	// Generation is the breaker's generation after the change; it grows by
	// one per change, so observers can order changes that raced.
	Generation uint64
	// OpenFor is the open time chosen when To is Open, jitter and
	// Retry-After included; zero otherwise.
	OpenFor time.Duration
}

// HostState is a read-only snapshot of one breaker, for metrics. The zero
// value is a closed breaker that has seen nothing.
type HostState struct {
	// Host is the breaker's name (see OpenError.Host).
	Host string
	// State is the breaker's state. An open breaker whose open time has
	// passed reads Open, with RetryIn zero, until an attempt probes it.
	State State
	// Generation counts the breaker's state changes, from 1.
	Generation uint64
	// Calls and Failures are what the sliding window holds (closed only).
	Calls, Failures int64
	// ConsecutiveFailures is the current run of failures (closed only).
	ConsecutiveFailures int64
	// Trips counts the trips since the breaker last closed; it sets the
	// growth of the open time.
	Trips int
	// ProbesInFlight is the number of probes in flight (half-open only).
	ProbesInFlight int
	// RetryIn is the time until a probe may pass (open only).
	RetryIn time.Duration
	// LastUsed is when an outcome was last recorded, or the breaker was
	// created, to the window's bucket width.
	LastUsed time.Time
}
