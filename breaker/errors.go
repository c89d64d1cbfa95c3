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
// refusal for an unnamed host.
//
// Its message is the same for every refusal of one host's breaker tripped
// for one kind of failure, so errors group: what changes from call to
// call (the time until the next probe, the counts) is in the fields.
type OpenError struct {
	// Host is the breaker's name: for a Transport, the canonical URL host
	// ("api.example.com", "127.0.0.1:8080"; see Config.Key) or the
	// Config.Key of the request.
	Host string
	// State is Open, or HalfOpen when a probe is in flight.
	State State
	// RetryIn is the time until the breaker lets its next probe through.
	RetryIn time.Duration
	// DeadHost is true when the breaker tripped because nearly every
	// recent attempt failed, as toward a host that is down or accepts
	// connections and never answers; false when a sustained share failed
	// (a degraded host).
	DeadHost bool
	// Reason says why the breaker tripped, in plain words with its
	// counts: "10 of the last 10 attempts failed". Empty for a zero
	// OpenError.
	Reason string
	// Failed and Attempts are the counts of Reason: the attempts to the
	// host counted since it last looked healthy (or since a silence of
	// Config.Window), and the failures among them.
	Failed, Attempts int
}

// Error returns "breaker: circuit open for HOST: " and the kind of
// failure that tripped it, with what helps; the same text for every
// refusal of one kind.
func (e *OpenError) Error() string {
	msg := "breaker: circuit open for " + e.Host
	switch {
	case e.DeadHost:
		return msg + ": nearly every recent attempt failed; one probe a second goes through until one succeeds. " +
			"If the host accepts connections but does not answer, each attempt waits out the caller's deadline: " +
			"set Retry.AttemptTimeout (or Retry.LearnedTimeout) in its policy to fail those attempts fast"
	case e.Reason != "":
		return msg + ": a sustained share of recent attempts failed, well above Breaker.FailureRate (30 % by default); " +
			"one probe a second goes through until one succeeds"
	}
	return msg
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
	// Reason says why, in plain words: for a trip, the counts that
	// tripped it ("10 of the last 10 attempts failed", see
	// OpenError.Failed); for a close, "probe succeeded".
	Reason string
	// DeadHost, Failed and Attempts are, for a trip, what OpenError
	// carries: whether nearly every recent attempt failed (a dead or
	// black-holed host) rather than a sustained share (a degraded host),
	// and the counts of Reason.
	DeadHost         bool
	Failed, Attempts int
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
