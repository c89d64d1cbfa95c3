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

// OpenError is the refusal of an attempt by an open breaker. Nothing was
// sent: it matches classify.ErrNotSent (so a retry loop stops and returns
// the previous attempt's outcome) and ErrOpen. The zero value reads as a
// refusal for an unnamed host with a probe due now.
type OpenError struct {
	// Host is the breaker's name: for a Transport, the canonical URL host
	// ("api.example.com", "127.0.0.1:8080"; see Config.Key) or the
	// Config.Key of the request.
	Host string
	// State is Open, or HalfOpen when a probe is in flight.
	State State
	// RetryIn is the time until the breaker lets its next probe through.
	RetryIn time.Duration
}

// Error returns "breaker: circuit open for HOST, next probe in D", with
// "half-open" for "open" while a probe is in flight.
func (e *OpenError) Error() string {
	state := "open"
	if e.State == HalfOpen {
		state = "half-open"
	}
	return "breaker: circuit " + state + " for " + e.Host + ", next probe in " + e.RetryIn.Round(time.Millisecond).String()
}

// Is reports whether target is ErrOpen or classify.ErrNotSent.
func (e *OpenError) Is(target error) bool {
	return target == ErrOpen || target == classify.ErrNotSent
}

// StateChange describes one state change of a breaker, for
// Config.OnStateChange. A breaker changes state twice per outage: closed
// to open when it trips, and half-open (open with a probe in flight) to
// closed when a probe succeeds; probes that fail change nothing, so they
// are not reported. The zero value describes no change.
type StateChange struct {
	// Host is the breaker's name (see OpenError.Host).
	Host string
	// From and To are the states before and after the change: Closed to
	// Open, or HalfOpen to Closed.
	From, To State
	// Reason says why, as a short human-readable phrase: "failing like a
	// dead host (sequential test: 95 % vs 35 % failures)", "failing like
	// a degraded host (sequential test: 50 % vs 30 % failures)" (see the
	// package doc) or "probe succeeded".
	Reason string
	// Generation is the breaker's generation after the change; it grows by
	// one per change, so observers can order changes that raced.
	Generation uint64
	// OpenFor is, when To is Open, the time until the first probe, jitter
	// included; zero otherwise.
	OpenFor time.Duration
}

// HostState is a read-only snapshot of one breaker, for metrics. The zero
// value is a closed breaker that has seen nothing.
type HostState struct {
	// Host is the breaker's name (see OpenError.Host).
	Host string
	// State is the breaker's state: HalfOpen when open with a probe in
	// flight.
	State State
	// Generation counts the breaker's state changes, from 1.
	Generation uint64
	// Evidence says how close a closed breaker is to tripping: the larger
	// of its two tests' log-likelihood ratios as a share of its trip
	// threshold. It is 0 for a fresh client, negative for a host whose
	// successes earned credit, and reaches 1 at a trip. Zero when open.
	Evidence float64
	// Trips counts the breaker's trips since it was created.
	Trips int
	// ProbesInFlight is the number of probes in flight (open only).
	ProbesInFlight int
	// RetryIn is the time until the next probe may pass (open only); zero
	// when it is due.
	RetryIn time.Duration
	// LastUsed is when an outcome was last counted, or the breaker was
	// created, to a sixteenth of Config.Window.
	LastUsed time.Time
}
