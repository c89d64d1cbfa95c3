package breaker_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/rebound-http/rebound/breaker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stub is a RoundTripper that answers every request with fn, without I/O.
type stub func(*http.Request) (*http.Response, error)

func (f stub) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// status returns a stub that answers every request with code.
func status(code int) stub {
	return func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: code, Body: http.NoBody, Header: http.Header{}}, nil
	}
}

// errNet stands for a network error from the base transport.
var errNet = errors.New("read tcp: connection reset by peer")

// get returns a GET request for url with ctx.
func get(t testing.TB, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send makes one attempt through rt and closes the response body. It
// returns the status (0 on error) and the error.
func send(t testing.TB, rt http.RoundTripper, url string) (int, error) {
	t.Helper()
	resp, err := rt.RoundTrip(get(t, context.Background(), url))
	if err != nil {
		if resp != nil {
			t.Errorf("%s: got both a response and an error", url)
		}
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// changes records the state changes a breaker reports.
type changes struct {
	mu  sync.Mutex
	all []breaker.StateChange
}

func (c *changes) add(ch breaker.StateChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(c.all, ch)
}

func (c *changes) list() []breaker.StateChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]breaker.StateChange(nil), c.all...)
}

// opens counts the changes to Open.
func (c *changes) opens() int {
	n := 0
	for _, ch := range c.list() {
		if ch.To == breaker.Open {
			n++
		}
	}
	return n
}
