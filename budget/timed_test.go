package budget_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/budget"
)

// timedStub is an inner link with RoundTripAt: it records the time it
// was given, and answers what it is told to.
type timedStub struct {
	at       []time.Time
	plain    int // calls of RoundTrip
	resp     *http.Response
	err      error
	duration time.Duration // virtual time each attempt takes
}

func (s *timedStub) RoundTrip(*http.Request) (*http.Response, error) {
	s.plain++
	return s.resp, s.err
}

func (s *timedStub) RoundTripAt(_ *http.Request, now time.Time) (*http.Response, error) {
	s.at = append(s.at, now)
	time.Sleep(s.duration)
	return s.resp, s.err
}

// TestGateHandsItsTimeToATimedLink checks that the gate sends through
// RoundTripAt, with the time it read before the attempt, when the next
// link has that method, and never through RoundTrip then.
func TestGateHandsItsTimeToATimedLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		next := &timedStub{resp: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, duration: 3 * time.Second}
		gate := budget.NewTransport(next, budget.Config{})
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
		for i := range 2 {
			before := time.Now()
			resp, err := gate.RoundTrip(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("attempt %d: %v, %v", i, resp, err)
			}
			if len(next.at) != i+1 || !next.at[i].Equal(before) {
				t.Fatalf("attempt %d sent at %v, want the gate's time %v", i, next.at, before)
			}
		}
		if next.plain != 0 {
			t.Fatalf("RoundTrip called %d times beside RoundTripAt", next.plain)
		}
	})
}

// bodyCloser records that its body was closed.
type bodyCloser struct {
	io.Reader
	closed bool
}

func (b *bodyCloser) Close() error { b.closed = true; return nil }

// A timed link that breaks the contract (a response and an error) gets
// its response closed and dropped, as through RoundTrip.
func TestGateTimedLinkNeverReturnsBoth(t *testing.T) {
	body := &bodyCloser{Reader: strings.NewReader("x")}
	boom := errors.New("boom")
	next := &timedStub{resp: &http.Response{StatusCode: http.StatusOK, Body: body}, err: boom}
	gate := budget.NewTransport(next, budget.Config{})
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	resp, err := gate.RoundTrip(req)
	if resp != nil || !errors.Is(err, boom) || !body.closed {
		t.Fatalf("got %v, %v; body closed: %v", resp, err, body.closed)
	}
}

// In front of a breaker, the pair still allocates nothing on a healthy
// call.
func TestGateAndBreakerDoNotAllocate(t *testing.T) {
	ok := &timedStub{resp: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}}
	gate := budget.NewTransport(breaker.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return ok.resp, nil
	}), breaker.Config{}), budget.Config{})
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	gate.RoundTrip(req)
	if n := testing.AllocsPerRun(1000, func() { gate.RoundTrip(req) }); n != 0 {
		t.Fatalf("budget and breaker allocate %v times per call", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
