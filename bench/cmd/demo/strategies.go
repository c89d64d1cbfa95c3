package main

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/rebound-http/rebound"
)

// strategy is one way of calling the server: a chain built in front of a
// fresh pooled transport.
type strategy struct {
	name  string
	setup string
	wrap  func(base http.RoundTripper) http.RoundTripper
}

// strategies are the contenders, each as its documentation sets it up.
var strategies = []strategy{
	{
		name:  "plain",
		setup: "http.Client over go-cleanhttp's pooled transport, no retries",
		wrap:  func(base http.RoundTripper) http.RoundTripper { return base },
	},
	{
		name:  "naive",
		setup: "a loop that retries at once on an error, 429 or 5xx, up to 4 attempts",
		wrap:  func(base http.RoundTripper) http.RoundTripper { return naive{next: base, attempts: 4} },
	},
	{
		name:  "retryablehttp",
		setup: "go-retryablehttp NewClient defaults: 4 retries, backoff 1 s..30 s, Retry-After on 429/503 (logger off)",
		wrap: func(base http.RoundTripper) http.RoundTripper {
			c := retryablehttp.NewClient()
			c.HTTPClient.Transport = base
			c.Logger = nil // by default it writes a line per request
			return &retryablehttp.RoundTripper{Client: c}
		},
	},
	{
		name: "failsafe",
		setup: "failsafe-go: failsafehttp retry policy defaults (2 retries, no delay but Retry-After) around a " +
			"circuit breaker on errors and 5xx: ≥ 50 % of ≥ 20 in 10 s, 5 s delay, 1 success closes it",
		wrap: func(base http.RoundTripper) http.RoundTripper {
			retry := failsafehttp.NewRetryPolicyBuilder().Build()
			// failsafe-go's breaker defaults (open on 1 failure for a
			// minute) suit no HTTP client; this is the common rate rule
			// (the one rebound had before its sequential tests).
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
		name:  "rebound",
		setup: "rebound.NewTransport defaults: 4 attempts, full-jitter backoff, retry budget, per-host breaker",
		wrap:  func(base http.RoundTripper) http.RoundTripper { return rebound.NewTransport(base) },
	},
}

// naive is the retry loop people write first: it repeats a failed request
// at once, whatever the failure, until attempts are spent. It replays the
// body through GetBody and closes what it discards.
type naive struct {
	next     http.RoundTripper
	attempts int
}

func (n naive) RoundTrip(req *http.Request) (*http.Response, error) {
	for i := 1; ; i++ {
		r := req
		if i > 1 {
			r = req.Clone(req.Context())
			if req.Body != nil && req.Body != http.NoBody {
				if req.GetBody == nil {
					return nil, errors.New("naive: cannot replay the body")
				}
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := n.next.RoundTrip(r)
		failed := err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if !failed || i >= n.attempts || req.Context().Err() != nil {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
	}
}

// janitor sits under a strategy and remembers every response body it hands
// up until it is closed, so the bodies a library forgets can be counted
// and closed at the end (an unclosed body holds its connection and two
// goroutines).
type janitor struct {
	next http.RoundTripper
	mu   sync.Mutex
	open map[*trackedBody]struct{}
}

func newJanitor(next http.RoundTripper) *janitor {
	return &janitor{next: next, open: make(map[*trackedBody]struct{})}
}

func (j *janitor) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := j.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b := &trackedBody{ReadCloser: resp.Body, j: j}
	j.mu.Lock()
	j.open[b] = struct{}{}
	j.mu.Unlock()
	resp.Body = b
	return resp, nil
}

// closeAll closes the bodies nobody closed and returns how many.
func (j *janitor) closeAll() int {
	j.mu.Lock()
	left := make([]*trackedBody, 0, len(j.open))
	for b := range j.open {
		left = append(left, b)
	}
	j.mu.Unlock()
	for _, b := range left {
		b.Close()
	}
	return len(left)
}

type trackedBody struct {
	io.ReadCloser
	j    *janitor
	once sync.Once
}

func (b *trackedBody) Close() error {
	b.once.Do(func() {
		b.j.mu.Lock()
		delete(b.j.open, b)
		b.j.mu.Unlock()
	})
	return b.ReadCloser.Close()
}

// closeOutcome reads and closes whatever response a call produced,
// including the last response failsafe-go keeps inside its ExceededError.
// It reports whether the body was read to its end.
func closeOutcome(resp *http.Response, err error) bool {
	var exceeded retrypolicy.ExceededError
	if errors.As(err, &exceeded) {
		if last, ok := exceeded.LastResult.(*http.Response); ok && last != nil && last != resp {
			io.Copy(io.Discard, last.Body)
			last.Body.Close()
		}
	}
	if resp == nil {
		return false
	}
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return rerr == nil
}
