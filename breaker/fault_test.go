package breaker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// trackedBody is a response body that records whether it was closed.
type trackedBody struct{ closed atomic.Bool }

func (b *trackedBody) Read([]byte) (int, error) { return 0, errors.New("read after the gate") }
func (b *trackedBody) Close() error             { b.closed.Store(true); return nil }

func TestHungProbeDoesNotBlockTheNext(t *testing.T) {
	// A probe sent without a deadline to a server that never answers must
	// not hold the breaker: the next probe goes a second later all the
	// same, and the hung probe's late outcome, if it ever comes, belongs
	// to a past generation once another probe has closed the breaker.
	synctest.Test(t, func(t *testing.T) {
		var got changes
		b := breaker.New("api", breaker.Config{Jitter: -1, OnStateChange: got.add})
		feed(t, b, strings.Repeat("U", 10))
		time.Sleep(time.Second)
		hung, err := b.Allow() // the probe; its outcome comes much later
		if err != nil {
			t.Fatalf("probe refused: %v", err)
		}
		if oe := openError(t, b); oe.State != breaker.HalfOpen || oe.RetryIn != time.Second {
			t.Fatalf("with the probe in flight: %v", oe)
		}
		time.Sleep(time.Second)
		feed(t, b, "H") // a second probe, which succeeds
		if s := b.Snapshot(); s.State != breaker.Closed {
			t.Fatalf("after a good probe: %+v", s)
		}
		hung(classify.Unhealthy)
		if s := b.Snapshot(); s.State != breaker.Closed || s.Evidence != 0 {
			t.Fatalf("the hung probe's late failure counted: %+v", s)
		}
		if chs := got.list(); len(chs) != 2 || chs[1].From != breaker.HalfOpen || chs[1].To != breaker.Closed || chs[1].Reason != "probe succeeded" {
			t.Fatalf("changes %+v", chs)
		}
	})
}

func TestPanickingHookClosesTheResponse(t *testing.T) {
	// The hook panics on the trip that a response causes: that response
	// never reaches the caller, so the gate must close it, or its
	// connection leaks.
	body := new(trackedBody)
	base := stub(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 500, Body: body, Header: http.Header{}}, nil
	})
	tr := breaker.NewTransport(base, breaker.Config{OnStateChange: func(breaker.StateChange) { panic("observer bug") }})
	for range breaker.DefaultMinCalls - 1 {
		send(t, tr, "https://api.example.com/")
	}
	body.closed.Store(false)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the hook's panic was swallowed")
			}
		}()
		tr.RoundTrip(get(t, t.Context(), "https://api.example.com/"))
	}()
	if !body.closed.Load() {
		t.Fatal("the response of the panicking trip was not closed")
	}
	if s := tr.Snapshot()[0]; s.State != breaker.Open {
		t.Fatalf("after the trip: %+v", s)
	}
}

func TestNextReturningBothResponseAndError(t *testing.T) {
	// A gate never returns both: http.Client would drop the response
	// without closing it.
	errBase := errors.New("base transport bug")
	tests := []struct {
		name    string
		code    int
		overNow bool // the caller's context is over: passed untracked
	}{
		{name: "with a 200", code: 200},
		{name: "with a 503", code: 503},
		{name: "untracked, context over", code: 200, overNow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := new(trackedBody)
			base := stub(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tt.code, Body: body, Header: http.Header{}}, errBase
			})
			tr := breaker.NewTransport(base, breaker.Config{})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.overNow {
				cancel()
			}
			resp, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/"))
			if resp != nil || !errors.Is(err, errBase) {
				t.Fatalf("got %v, %v; want only the error", resp, err)
			}
			if !body.closed.Load() {
				t.Fatal("the dropped response was not closed")
			}
			if tt.overNow {
				return
			}
			if s := tr.Snapshot()[0]; s.Evidence <= 0 {
				t.Fatalf("the error was not counted as a failure: %+v", s)
			}
		})
	}
}
