package transport

import (
	"errors"
	"fmt"
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
