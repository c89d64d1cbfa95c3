package transport

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/classify"
)

// ErrHeld is matched, with errors.Is, by every call refused because its
// host's admission gave it no turn before its deadline (an
// *admission.RefusedError, whose Limit says what limited the host: the
// server's wait hint, its quota, or rebound's adaptive pace). It also
// matches classify.ErrNotSent.
var ErrHeld = admission.ErrNotAdmitted

// ErrNilRequest is returned for a nil request; nothing is sent.
var ErrNilRequest = errors.New("transport: nil request")

// ErrZeroTransport is the error, in an *Error, of every call through a
// Transport that was not made by New (the zero value): nothing is sent.
var ErrZeroTransport = errors.New("transport: Transport has nothing to send through: create it with transport.New")

// ErrNoResponse is the cause reported when the next RoundTripper returned
// neither a response nor an error, which the RoundTripper contract forbids.
var ErrNoResponse = errors.New("transport: next RoundTripper returned neither response nor error")

// Every way the retry loop ends has a sentinel, matched with errors.Is by
// the *Error of a call that ended on an error, and by the stop that
// Outcome reports for a response the loop gave up on:
//
//	_, err := client.Do(req)
//	switch {
//	case errors.Is(err, transport.ErrAttemptsExhausted): // every attempt failed
//	case errors.Is(err, transport.ErrRefused):           // a gate said no
//		if errors.Is(err, budget.ErrExhausted) { ... }   // which gate
//	}
//
// Each sentinel's message is its Stop constant with the package prefix
// ("transport: attempts exhausted"); Error.Stop and Event.Stop carry the
// constant itself, a stable label for logs and metrics.
var (
	// ErrFinal: the last attempt's outcome is not retryable (a status
	// outside the retryable set, a certificate the client rejects, an
	// unknown host, the caller's deadline or cancellation during the
	// attempt, a request not safe to repeat). Stop StopFinal.
	ErrFinal error = &stopError{StopFinal}
	// ErrAttemptsExhausted: the last of Config.MaxAttempts attempts failed
	// retryably. Stop StopAttempts.
	ErrAttemptsExhausted error = &stopError{StopAttempts}
	// ErrRefused: the next attempt was refused before it was sent, by a
	// gate (the retry budget, the circuit breaker: any error matching
	// classify.ErrNotSent) or because its host is held (StopHeld, see
	// ErrHeld). The refusal itself stays reachable, so errors.Is and
	// errors.As tell which: budget.ErrExhausted, budget.ErrThrottled,
	// breaker.ErrOpen and *breaker.OpenError, ErrHeld and *admission.RefusedError.
	// Stop StopRefused or StopHeld.
	ErrRefused error = &stopError{StopRefused}
	// ErrDeadline: the wait before the next attempt (backoff or the
	// server's hint) would end after the context's deadline, so the loop
	// stopped at once. Stop StopDeadline.
	ErrDeadline error = &stopError{StopDeadline}
	// ErrHintOverCap: the server asked for a wait longer than
	// Config.MaxRetryAfter. Stop StopHintOverCap.
	ErrHintOverCap error = &stopError{StopHintOverCap}
	// ErrBodyNotReplayable: the request body cannot be sent again (no
	// GetBody, larger than Config.MaxBodyBytes, or GetBody failed). Stop
	// StopBodyNotReplay.
	ErrBodyNotReplayable error = &stopError{StopBodyNotReplay}
	// ErrResponseTooLarge: a retryable response's body is larger than
	// Config.MaxResponseBytes, so it was handed over rather than buffered
	// and retried. Stop StopResponseTooBig.
	ErrResponseTooLarge error = &stopError{StopResponseTooBig}
	// ErrCanceledWhileWaiting: the context ended during the wait before the
	// next attempt (or a host's hold); the error also matches the
	// context's error. Stop StopCanceled.
	ErrCanceledWhileWaiting error = &stopError{StopCanceled}
)

// stopError is the type of the stop sentinels.
type stopError struct{ stop string }

func (e *stopError) Error() string { return "transport: " + e.stop }

// stopSentinel returns the sentinel of a Stop constant, or nil.
func stopSentinel(stop string) error {
	switch stop {
	case StopFinal:
		return ErrFinal
	case StopAttempts:
		return ErrAttemptsExhausted
	case StopRefused, StopHeld:
		return ErrRefused
	case StopDeadline:
		return ErrDeadline
	case StopHintOverCap:
		return ErrHintOverCap
	case StopBodyNotReplay:
		return ErrBodyNotReplayable
	case StopResponseTooBig:
		return ErrResponseTooLarge
	case StopCanceled:
		return ErrCanceledWhileWaiting
	}
	return nil
}

// Error is the error of a call that ended on a transport error, or on a
// refusal before anything was sent. It wraps the sentinel of its Stop, the
// last attempt's error and the refusal that ended the loop, so errors.Is
// and errors.As reach each of them (ErrAttemptsExhausted, a *net.OpError,
// context.Canceled, budget.ErrExhausted, a *breaker.OpenError ...), and it
// says how many attempts were sent. The loop fills every field it can; the
// zero value reads "rebound: 0 attempts".
type Error struct {
	// Attempts is the number of attempts sent: attempts that went to the
	// next RoundTripper and were not refused by a gate or held (a
	// connection that was refused or reset counts; a gate's refusal does
	// not). It is 0 when the first attempt was refused.
	Attempts int
	// Reason is the classification reason of the last attempt's outcome
	// (classify.Verdict.Reason), or classify.ReasonNotSent when no
	// attempt was sent.
	Reason string
	// Stop says why the loop ended: one of the Stop constants, whose
	// sentinel (ErrFinal, ErrAttemptsExhausted ...) the error matches.
	Stop string
	// Why says in plain words what ended the call and what setting
	// changes it, when Stop alone does not (one of the Why constants:
	// WhyNotRepeated, WhyCallerDeadline, WhyOneAttempt ...); empty
	// otherwise. The message shows it in place of Stop.
	Why string
	// Err is the last attempt's error, or the refusal when no attempt was
	// sent.
	Err error
	// Refusal is the error of the gate or the host hold that refused the
	// next attempt (Stop StopRefused or StopHeld), nil otherwise. After
	// attempts that were sent it does not make the error match
	// classify.ErrNotSent: something was sent, and a link outside this loop
	// must not take the call for an unsent one.
	Refusal error
}

// Error returns a message such as
// "rebound: 4 attempts, attempts exhausted (connection refused): dial tcp ...",
// with Why in place of Stop when it is set
// ("rebound: 1 attempt, not repeated: POST or PATCH ... (unexpected eof): EOF"),
// or, when a gate refused a retry,
// "rebound: 1 attempt, refused by gate: budget: retry budget exhausted; last attempt (connection refused): dial tcp ...".
func (e *Error) Error() string {
	noun := "attempts"
	if e.Attempts == 1 {
		noun = "attempt"
	}
	msg := fmt.Sprintf("rebound: %d %s", e.Attempts, noun)
	switch {
	case e.Why != "":
		msg += ", " + e.Why
	case e.Stop != "":
		msg += ", " + e.Stop
	}
	if e.Refusal != nil && e.Attempts > 0 {
		msg += ": " + e.Refusal.Error() + "; last attempt"
	}
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel of Stop, Err and Refusal, those that are
// set. Refusal is reached through a view that does not match
// classify.ErrNotSent when attempts were sent.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 3)
	if s := stopSentinel(e.Stop); s != nil {
		errs = append(errs, s)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Refusal != nil && e.Refusal != e.Err {
		if e.Attempts > 0 {
			errs = append(errs, sentRefusal{e.Refusal})
		} else {
			errs = append(errs, e.Refusal)
		}
	}
	return errs
}

// sentRefusal shows a refusal that came after attempts were sent: it
// matches what the refusal matches (budget.ErrExhausted, ErrHeld ...) and
// converts with errors.As as it does, except classify.ErrNotSent.
type sentRefusal struct{ err error }

func (r sentRefusal) Error() string { return r.err.Error() }

func (r sentRefusal) Is(target error) bool {
	return target != classify.ErrNotSent && errors.Is(r.err, target)
}

func (r sentRefusal) As(target any) bool { return errors.As(r.err, target) }

// An *Error is a net.Error, so os.IsTimeout and net.Error checks see
// through it (and through the *url.Error http.Client wraps it in, which
// asks its direct cause).
var _ net.Error = (*Error)(nil)

// Timeout reports whether the call ended because it ran out of time: the
// last attempt's error is a timeout (the caller's deadline or
// http.Client.Timeout, the loop's AttemptTimeout, http.Transport's
// ResponseHeaderTimeout, a dial timeout: any error matching
// context.DeadlineExceeded or classify.ErrAttemptTimeout, or a net.Error
// whose Timeout is true), or the loop stopped because the next attempt
// would have started after the deadline (StopDeadline).
func (e *Error) Timeout() bool {
	return e.Stop == StopDeadline || isTimeout(e.Err)
}

// Temporary reports whether the failure is transient, so that a later call
// may succeed: a timeout, or a loop that stopped on a retryable outcome
// (attempts, deadline, a gate's refusal, a body that could not be
// replayed). A final outcome (a certificate the client rejects, an invalid
// request, an unknown host) and a call the caller cancelled are not.
// net.Error deprecates Temporary; it is here to complete the interface.
func (e *Error) Temporary() bool {
	if e.Timeout() {
		return true
	}
	switch e.Stop {
	case StopAttempts, StopRefused, StopHeld, StopBodyNotReplay:
		return true
	}
	return false
}

// isTimeout reports whether err is, or wraps, a timeout.
func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, classify.ErrAttemptTimeout) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
