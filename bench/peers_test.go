package bench

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/sony/gobreaker/v2"
)

// This file builds each peer the way its documentation suggests, in front
// of a given base RoundTripper, so every benchmark and test compares the
// same configurations.

// okStub answers every request at once with the same preallocated 200, so
// a benchmark through it measures only what sits in front of it. It is not
// safe for concurrent use: failsafe-go replaces the Body of the response it
// is given (wrapping it to cancel contexts on Close), so RoundTrip puts
// http.NoBody back each time, otherwise the wrappers would nest without end.
type okStub struct{ resp http.Response }

func newOKStub() *okStub {
	return &okStub{resp: http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
}

func (s *okStub) RoundTrip(*http.Request) (*http.Response, error) {
	s.resp.Body = http.NoBody
	return &s.resp, nil
}

// newRetryable is go-retryablehttp's default client (4 retries, 1 s..30 s
// exponential backoff, its DefaultRetryPolicy) over base, used as a
// RoundTripper the way its StandardClient does. wait, when positive,
// replaces both backoff bounds. The logger is off: by default it writes a
// line per request to stderr.
func newRetryable(base http.RoundTripper, wait time.Duration) http.RoundTripper {
	c := retryablehttp.NewClient()
	c.HTTPClient.Transport = base
	c.Logger = nil
	if wait > 0 {
		c.RetryWaitMin, c.RetryWaitMax = wait, wait
	}
	return &retryablehttp.RoundTripper{Client: c}
}

// newFailsafe is failsafe-go's HTTP retry policy (failsafehttp's handling
// of errors, 429 and 5xx but 501, and of Retry-After) with 3 retries and no
// delay, which is its default, over base. With a non-nil b the policy also
// spends failsafe-go's retry budget.
func newFailsafe(base http.RoundTripper, b retryBudget) http.RoundTripper {
	builder := failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(3)
	if b != nil {
		builder = builder.WithBudget(b)
	}
	return failsafehttp.NewRoundTripper(base, builder.Build())
}

// retryBudget is failsafe-go's budget.Budget, named here so callers need
// not import its package.
type retryBudget = interface{ Rate() float64 }

// closeOutcome closes the body of whatever response a call produced,
// including the last response failsafe-go keeps inside its
// retrypolicy.ExceededError instead of returning it.
func closeOutcome(resp *http.Response, err error) {
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var exceeded retrypolicy.ExceededError
	if errors.As(err, &exceeded) {
		if last, ok := exceeded.LastResult.(*http.Response); ok && last != nil && last != resp {
			io.Copy(io.Discard, last.Body)
			last.Body.Close()
		}
	}
}

// errServerFailure marks a 5xx answer as a failure for gobreaker, whose
// Execute only sees errors.
var errServerFailure = errors.New("bench: server answered 5xx")

// gobreakerTransport is the natural RoundTripper around sony/gobreaker:
// one breaker for every host, network errors and 5xx answers count as
// failures (as they do for rebound's breaker), and a 5xx is still handed
// to the caller as a response.
type gobreakerTransport struct {
	next http.RoundTripper
	cb   *gobreaker.CircuitBreaker[*http.Response]
}

func newGobreaker(next http.RoundTripper, st gobreaker.Settings) *gobreakerTransport {
	return &gobreakerTransport{next: next, cb: gobreaker.NewCircuitBreaker[*http.Response](st)}
}

func (t *gobreakerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.cb.Execute(func() (*http.Response, error) {
		resp, err := t.next.RoundTrip(req)
		if err == nil && resp.StatusCode >= 500 {
			return resp, errServerFailure
		}
		return resp, err
	})
	if err == errServerFailure {
		return resp, nil
	}
	return resp, err
}
