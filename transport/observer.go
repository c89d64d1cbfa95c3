package transport

import (
	"net/http"
	"strconv"
	"time"

	"github.com/rebound-http/rebound/admission"
)

// EventKind says what an Event reports. The zero value is EventAttempt.
type EventKind uint8

const (
	// EventAttempt: an attempt is about to be sent.
	EventAttempt EventKind = iota
	// EventRetry: an attempt failed retryably and the loop will wait Delay
	// before the next one.
	EventRetry
	// EventGiveUp: the call ends on a failure; Stop says why the loop did
	// not (or could not) try again.
	EventGiveUp
	// EventHold: the attempt waits Delay (about) for its turn before it is
	// sent: its host's admission is paused by a wait hint, paced by a
	// quota or by the pace learned from throttling, or other calls wait
	// ahead of it (see package admission).
	EventHold
	// EventHedge: attempt Attempt was sent as a hedge (see Config.Hedge),
	// in parallel with the call's attempts still waiting for an answer,
	// Delay after the first of them was sent. It fires once the hedge has
	// passed its host's admission and every gate below the loop (the
	// budget, the breaker): when net/http starts getting it a connection,
	// or, through a base that is not net/http's, when its result comes
	// back not refused; a hedge refused by a gate or not admitted reports
	// nothing. It may fire after the call has returned (a losing hedge).
	// A hedge is an attempt: this event reports it instead of
	// EventAttempt, so counting both kinds counts the attempts sent, and
	// Attempt - 1 is the attempt's resend count.
	EventHedge
)

// String returns "attempt", "retry", "give up", "hold" or "hedge".
func (k EventKind) String() string {
	switch k {
	case EventAttempt:
		return "attempt"
	case EventRetry:
		return "retry"
	case EventGiveUp:
		return "give up"
	case EventHold:
		return "hold"
	case EventHedge:
		return "hedge"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Reasons the loop stops, reported in Event.Stop and Error.Stop.
const (
	StopFinal          = "final outcome"
	StopAttempts       = "attempts exhausted"
	StopRefused        = "refused by gate"
	StopDeadline       = "deadline before next attempt"
	StopHintOverCap    = "server wait over cap"
	StopBodyNotReplay  = "body not replayable"
	StopResponseTooBig = "response too large to buffer"
	StopCanceled       = "canceled while waiting"
	StopHeld           = "no turn before the deadline"
)

// Event is one decision of the retry loop, reported to an Observer. The
// zero value is an EventAttempt with no request.
type Event struct {
	// Kind says what the event reports.
	Kind EventKind
	// Request is the caller's request (never modify it).
	Request *http.Request
	// Attempt is the number of the attempt the event is about, from 1;
	// for EventGiveUp, the number of attempts sent (0 when the first was
	// refused or held), as Error.Attempts and Outcome say.
	Attempt int
	// Reason is the classification reason of the attempt's outcome
	// (classify.Verdict.Reason); empty for EventAttempt.
	Reason string
	// StatusCode is the attempt's response status, or 0 after an error;
	// for an EventGiveUp of a retry refused by a gate, the status of the
	// last attempt sent, whose response the caller gets.
	StatusCode int
	// Err is the attempt's transport error, if any.
	Err error
	// Delay is the wait before the next attempt (EventRetry, EventHold),
	// or how long the attempts a hedge joins had waited (EventHedge).
	Delay time.Duration
	// FromServer reports that Delay honours the server's wait hint rather
	// than backoff (EventRetry).
	FromServer bool
	// Stop says why the loop ended (EventGiveUp); one of the Stop constants.
	Stop string
	// Why says in plain words what ended the call and what setting
	// changes it (EventGiveUp), when Stop alone does not, as Error.Why
	// and Outcome do; for an EventRetry of a POST or PATCH that only its
	// idempotency key licenses, whose key it was: WhyCallerKey or
	// WhyGeneratedKey. Empty otherwise.
	Why string
	// Limit names what limited the host's admission: for EventHold what
	// the attempt waits for, for an EventGiveUp with StopHeld what gave
	// the call no turn before its deadline (the server's wait hint, its
	// quota, or the pace learned from its throttling). The zero value,
	// admission.LimitNone, for every other event.
	Limit admission.Limit
}

// Observer receives the loop's events, synchronously, on the goroutine of
// the call; it must be safe for concurrent use and should return quickly.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }
