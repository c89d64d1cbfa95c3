// Package budget keeps a rebound chain's retries from turning an outage into
// a retry storm.
//
// It has two parts:
//
//   - retry budgets: a Budget that every first attempt pays into (Deposit)
//     and every retry draws from (Withdraw). Ratio, the default, allows
//     retries up to a share of recent requests over a sliding window plus a
//     small per-second floor, in the manner of Finagle and Linkerd;
//     TokenBucket allows a fixed number of retries per second. Users may
//     supply their own implementation;
//   - adaptive client-side throttling (Throttle), from the Google SRE book's
//     "Handling Overload": each host's requests and accepts are counted over
//     a window, and a first attempt is rejected locally with probability
//     max(0, (requests − K·accepts) / (requests + 1)).
//
// Transport, built by NewTransport, is the gate that applies both to every
// attempt of a retry loop (package transport) before it reaches the circuit
// breaker and the network:
//
//	client := &http.Client{Transport: transport.New(
//		budget.NewTransport(nil, budget.Config{}), transport.Config{})}
//
// A refused attempt is never sent: the gate returns ErrExhausted (a retry
// over budget) or ErrThrottled (a throttled first attempt), both matching
// classify.ErrNotSent, and the retry loop hands the caller the previous
// attempt's real response.
//
// Every method takes the current instant as an argument instead of reading
// the clock, so the arithmetic is tested with fixed times; the gate reads
// the clock once per attempt.
package budget

import (
	"errors"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// Budget decides whether a retry may be sent, given the traffic it has been
// told about. Implementations must be safe for concurrent use and must
// decide and record a withdrawal in one step (under one lock, or with one
// compare-and-swap), so two concurrent retries can never both take the last
// unit of budget.
//
// The instant passed to each method is the caller's clock reading; an
// implementation should tolerate instants slightly out of order, as
// concurrent callers read the clock before they reach the budget.
type Budget interface {
	// Deposit records a first attempt, sent at now.
	Deposit(now time.Time)
	// Withdraw reports whether a retry may be sent at now and, when it
	// may, records it.
	Withdraw(now time.Time) bool
	// Balance returns how many retries Withdraw would allow at now, if
	// nothing else happened. It may be fractional. It is for metrics and
	// observers; deciding on it and then withdrawing is racy.
	Balance(now time.Time) float64
}

// ErrExhausted is returned by a Transport, without sending anything, when
// a retry would exceed the budget. It matches classify.ErrNotSent, so the
// retry loop stops and returns the previous attempt's outcome.
var ErrExhausted error = &classify.NotSentError{Msg: "budget: retry budget exhausted"}

// ErrThrottled is returned by a Transport, without sending anything, when
// adaptive throttling rejects a first attempt locally. It matches
// classify.ErrNotSent; the caller receives it (wrapped by the retry loop),
// as there is no previous attempt to return.
var ErrThrottled error = &classify.NotSentError{Msg: "budget: request throttled by the client"}

// errNilRequest is returned by Transport.RoundTrip for a nil request or a
// request without a URL. It says that nothing was sent, without matching
// classify.ErrNotSent: the request cannot be sent at all, so the retry loop
// must not read it as a gate's refusal.
var errNilRequest = errors.New("budget: nil request or URL")

// errZeroTransport is returned by the RoundTrip of a Transport that
// NewTransport did not make.
var errZeroTransport = errors.New("budget: Transport has no budget: create it with budget.NewTransport")

// Refusal describes an attempt the gate refused, for Config.OnRefuse.
// The zero value describes a refused retry on the empty host.
type Refusal struct {
	// Host is the request URL's host in canonical form: lower case, no
	// trailing dot, IDNA A-label, IPv6 in brackets, without the scheme's
	// default port ("api.example.com", "127.0.0.1:8080").
	Host string
	// Throttled is true for a first attempt rejected by adaptive
	// throttling, false for a retry refused by the budget.
	Throttled bool
	// Err is the error returned to the retry loop: ErrThrottled or
	// ErrExhausted.
	Err error
	// Balance is the budget's balance just after the refusal (see
	// Budget.Balance): the host's budget with Config.PerHost, else the
	// transport's only one.
	Balance float64
	// Probability is the throttle's rejection probability for the host at
	// the time of the refusal; 0 when throttling is off.
	Probability float64
}

// floatOr returns v when it is a finite number > 0, def when v is zero or
// NaN, and 0 when v is negative. Values above max are capped at max.
func floatOr(v, def, max float64) float64 {
	switch {
	case v != v || v == 0: // NaN or zero
		return def
	case v < 0:
		return 0
	case v > max:
		return max
	}
	return v
}

// durationOr returns d when it is positive, else def.
func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
