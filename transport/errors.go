package transport

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/rebound-http/rebound/classify"
)

// ErrNilRequest is returned for a nil request; nothing is sent.
var ErrNilRequest = errors.New("transport: nil request")

// ErrNoResponse is the cause reported when the next RoundTripper returned
// neither a response nor an error, which the RoundTripper contract forbids.
var ErrNoResponse = errors.New("transport: next RoundTripper returned neither response nor error")

// Error is the error of a call that ended on a transport error (or a gate's
// refusal before any response). It wraps the last attempt's error, so
// errors.Is and errors.As reach the cause (a *breaker.OpenError, a
// *net.OpError, context.Canceled ...), and says how many attempts were made
// and why the loop stopped. The loop fills every field; the zero value
// reads "rebound: 0 attempts".
type Error struct {
	// Attempts is the number of attempts made, the refused one included.
	Attempts int
	// Reason is the classification reason of the last attempt's outcome.
	Reason string
	// Stop says why the loop ended: one of the Stop constants.
	Stop string
	// Err is the last attempt's error.
	Err error
}

// Error returns a message such as
// "rebound: 4 attempts, attempts exhausted (connection refused): dial tcp ...".
func (e *Error) Error() string {
	noun := "attempts"
	if e.Attempts == 1 {
		noun = "attempt"
	}
	msg := fmt.Sprintf("rebound: %d %s", e.Attempts, noun)
	if e.Stop != "" {
		msg += ", " + e.Stop
	}
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the last attempt's error.
func (e *Error) Unwrap() error { return e.Err }

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
	case StopAttempts, StopRefused, StopBodyNotReplay:
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
