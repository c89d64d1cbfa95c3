package breaker_test

import (
	"context"
	"errors"
	"net/http"
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

func TestOverdueProbeReopens(t *testing.T) {
	// A probe sent without a deadline to a server that never answers would
	// hold the only probe slot for ever: every later attempt to the host
	// would be refused with "probe in flight", whatever happens to the
	// server. Once a probe has been out for MaxOpenTimeout, the longest the
	// breaker ever stays open, the next attempt reopens the breaker.
	synctest.Test(t, func(t *testing.T) {
		var got changes
		b := breaker.New("api", breaker.Config{Jitter: -1, OnStateChange: got.add})
		feed(t, b, "UUUUU")
		time.Sleep(5 * time.Second)
		hung, err := b.Allow() // the probe; its outcome never comes
		if err != nil {
			t.Fatalf("probe refused: %v", err)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		if oe := openError(t, b); oe.State != breaker.HalfOpen {
			t.Fatalf("before the probe is overdue: %v", oe)
		}
		time.Sleep(time.Nanosecond)
		oe := openError(t, b)
		if oe.State != breaker.Open || oe.RetryIn != 10*time.Second {
			t.Fatalf("with the probe overdue: %v, want open for 10s", oe)
		}
		time.Sleep(10 * time.Second)
		feed(t, b, "H") // a new probe, which succeeds
		hung(classify.Healthy)
		if s := b.Snapshot(); s.State != breaker.Closed {
			t.Fatalf("after a good probe: %+v", s)
		}
		chs := got.list()
		if len(chs) != 5 || chs[2].To != breaker.Open || chs[2].Reason != "probe unanswered after 1m0s" {
			t.Fatalf("changes %+v", chs)
		}
	})
}

func TestPanickingHookDoesNotWedgeTheProbe(t *testing.T) {
	// The hook panics on the change to half-open, which the first attempt
	// after the open time makes and which gives that attempt the probe
	// slot. The attempt never happens, so the slot must be freed.
	synctest.Test(t, func(t *testing.T) {
		var panicked atomic.Bool
		b := breaker.New("api", breaker.Config{OnStateChange: func(ch breaker.StateChange) {
			if ch.To == breaker.HalfOpen && !panicked.Swap(true) {
				panic("observer bug")
			}
		}})
		feed(t, b, "UUUUU")
		time.Sleep(5 * time.Second)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the hook's panic was swallowed")
				}
			}()
			b.Allow()
		}()
		if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ProbesInFlight != 0 {
			t.Fatalf("after the hook panicked: %+v", s)
		}
		feed(t, b, "H")
		if b.State() != breaker.Closed {
			t.Fatalf("state %v after a good probe", b.State())
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
	for range 4 {
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
			if s := tr.Snapshot()[0]; s.Failures != 1 {
				t.Fatalf("the error was not counted as a failure: %+v", s)
			}
		})
	}
}
