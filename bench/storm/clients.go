package storm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/rebound-http/rebound"
)

// Library is one way a client process calls the server: New builds, for
// one process, the chain in front of the process's connection to the
// server. Every process gets its own chain, so its own breaker, budget
// and admission, as separate machines would. The zero value is not
// usable (New is nil).
type Library struct {
	// Name is the short name used in tables and file names.
	Name string
	// Setup says how the library is configured.
	Setup string
	// New returns the process's RoundTripper over base.
	New func(base http.RoundTripper) http.RoundTripper
}

// Libraries are the contenders, each configured as its documentation
// suggests (the same set-ups as bench/cmd/demo, but for the naive loop's
// fixed backoff).
var Libraries = []Library{
	{
		Name:  "plain",
		Setup: "http.Client, no retries",
		New:   func(base http.RoundTripper) http.RoundTripper { return base },
	},
	{
		Name:  "naive",
		Setup: "the loop people write: 1 s timeout per attempt (http.Client.Timeout), errors, 429 and 5xx retried after a fixed 100 ms, up to 4 attempts",
		New: func(base http.RoundTripper) http.RoundTripper {
			return naive{next: base, attempts: 4, wait: 100 * time.Millisecond, timeout: time.Second}
		},
	},
	{
		Name:  "retryablehttp",
		Setup: "go-retryablehttp NewClient defaults: 4 retries, backoff 1 s..30 s, Retry-After on 429/503",
		New: func(base http.RoundTripper) http.RoundTripper {
			c := retryablehttp.NewClient()
			c.HTTPClient.Transport = base
			c.Logger = nil // by default it writes a line per request
			return &retryablehttp.RoundTripper{Client: c}
		},
	},
	{
		Name: "failsafe",
		Setup: "failsafe-go: failsafehttp retry policy defaults (2 retries, no delay but Retry-After) around a " +
			"circuit breaker on errors and 5xx: ≥ 50 % of ≥ 20 in 10 s, 5 s delay, 1 success closes it",
		New: func(base http.RoundTripper) http.RoundTripper {
			retry := failsafehttp.NewRetryPolicyBuilder().Build()
			cb := circuitbreaker.NewBuilder[*http.Response]().
				HandleIf(func(r *http.Response, err error) bool { return err != nil || r.StatusCode >= 500 }).
				WithFailureRateThreshold(0.5, 20, 10*time.Second).
				WithDelay(5 * time.Second).
				WithSuccessThreshold(1).
				Build()
			return failsafehttp.NewRoundTripper(base, retry, cb)
		},
	},
	{
		Name:  "rebound",
		Setup: "rebound.NewTransport defaults",
		New:   func(base http.RoundTripper) http.RoundTripper { return rebound.NewTransport(base) },
	},
}

// LibraryNamed returns the library of that name.
func LibraryNamed(name string) (Library, bool) {
	for _, l := range Libraries {
		if l.Name == name {
			return l, true
		}
	}
	return Library{}, false
}

// naive is the retry loop people write first: each attempt is bounded by
// timeout (as an http.Client with a Timeout would bound it), and a failed
// attempt (an error, a timeout, 429 or 5xx) is repeated after a fixed
// wait, until attempts are spent or the caller's context ends. The
// attempt that times out is abandoned, not cancelled at the server: it
// still waits there. The model's requests have no body.
type naive struct {
	next     http.RoundTripper
	attempts int
	wait     time.Duration
	timeout  time.Duration
}

func (n naive) RoundTrip(req *http.Request) (*http.Response, error) {
	for i := 1; ; i++ {
		ctx, cancel := context.WithTimeout(req.Context(), n.timeout)
		resp, err := n.next.RoundTrip(req.WithContext(ctx))
		cancel() // the model's responses have no body to cut short
		failed := err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if !failed || i >= n.attempts || req.Context().Err() != nil {
			return resp, err
		}
		if resp != nil {
			resp.Body.Close()
		}
		t := time.NewTimer(n.wait)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
}

// closeOutcome closes whatever response a call produced, including the
// last response failsafe-go keeps inside its ExceededError, and reports
// whether the call succeeded (a 2xx).
func closeOutcome(resp *http.Response, err error) bool {
	var exceeded retrypolicy.ExceededError
	if errors.As(err, &exceeded) {
		if last, ok := exceeded.LastResult.(*http.Response); ok && last != nil && last != resp {
			last.Body.Close()
		}
	}
	if resp == nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode/100 == 2
}
