package budget_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/rebound-http/rebound/transport"
)

// stub is a base RoundTripper that answers with respond and counts the
// first attempts and retries that reached it.
type stub struct {
	mu      sync.Mutex
	firsts  int
	retries int
	respond func(req *http.Request) (*http.Response, error)
}

func (s *stub) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	s.mu.Lock()
	if transport.IsRetry(req.Context()) {
		s.retries++
	} else {
		s.firsts++
	}
	respond := s.respond
	s.mu.Unlock()
	return respond(req)
}

// counts returns the first attempts and retries received.
func (s *stub) counts() (firsts, retries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firsts, s.retries
}

// setRespond replaces the answer.
func (s *stub) setRespond(f func(req *http.Request) (*http.Response, error)) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

// status answers code to everything.
func status(code int) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		return response(req, code), nil
	}
}

func response(req *http.Request, code int) *http.Response {
	body := http.StatusText(code)
	return &http.Response{
		StatusCode: code, Status: body, Header: make(http.Header), Request: req,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}
}

// closeTracker is a request body that records whether it was closed.
type closeTracker struct {
	io.Reader
	mu     sync.Mutex
	closed bool
}

func (c *closeTracker) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *closeTracker) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// get returns a GET request for url; retry makes it look like a retry
// made by the loop.
func get(url string, retry bool) *http.Request {
	ctx := context.Background()
	if retry {
		ctx = transport.WithAttempt(ctx, transport.Attempt{N: 2})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}
