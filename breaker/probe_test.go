package breaker_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
)

func TestRealServerTripsAndRecovers(t *testing.T) {
	// A real server answers 502 until the breaker opens, then recovers.
	// The probe interval is 1 ns, so the next call probes at once (no
	// waiting in real time); its success closes the breaker and 50
	// concurrent callers flow again.
	srv := newFlaky(t, http.StatusBadGateway)
	var got changes
	tr := newTransport(t, breaker.Config{OpenTimeout: time.Nanosecond, Jitter: -1, OnStateChange: got.add})
	for range breaker.DefaultMinCalls {
		send(t, tr, srv.URL)
	}
	if s := tr.Snapshot(); len(s) != 1 || s[0].State != breaker.Open {
		t.Fatalf("after %d failures: %+v", breaker.DefaultMinCalls, s)
	}
	srv.status.Store(http.StatusOK)
	if code, err := send(t, tr, srv.URL); err != nil || code != 200 {
		t.Fatalf("probe: %d %v", code, err)
	}
	var wg sync.WaitGroup
	const callers = 50
	for range callers {
		wg.Go(func() {
			if code, err := send(t, tr, srv.URL); err != nil || code != 200 {
				t.Errorf("after recovery: %d %v", code, err)
			}
		})
	}
	wg.Wait()
	if n := srv.hits.Load(); n != breaker.DefaultMinCalls+1+callers {
		t.Fatalf("server hits %d, want %d", n, breaker.DefaultMinCalls+1+callers)
	}
	chs := got.list()
	if len(chs) != 2 || chs[0].To != breaker.Open || chs[1].From != breaker.HalfOpen || chs[1].To != breaker.Closed || chs[1].Host != srv.Listener.Addr().String() {
		t.Fatalf("changes %+v, want open then closed", chs)
	}
}

func TestOneProbeAmongConcurrentCallers(t *testing.T) {
	// In virtual time with a stub base: nothing passes before the probe
	// time; at it, exactly one of 50 concurrent callers probes, and the
	// others are refused while it is in flight.
	synctest.Test(t, func(t *testing.T) {
		var hits atomic.Int64
		healthy := atomic.Bool{}
		release := make(chan struct{})
		base := stub(func(*http.Request) (*http.Response, error) {
			hits.Add(1)
			if healthy.Load() {
				<-release
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			}
			return &http.Response{StatusCode: 503, Body: http.NoBody}, nil
		})
		tr := breaker.NewTransport(base, breaker.Config{Jitter: -1})
		for range breaker.DefaultMinCalls {
			send(t, tr, "https://api.example.com/")
		}
		time.Sleep(time.Second - time.Millisecond)
		if _, err := send(t, tr, "https://api.example.com/"); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("1ms before the probe time: %v", err)
		}
		time.Sleep(time.Millisecond)
		healthy.Store(true)
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range 50 {
			wg.Go(func() {
				_, err := send(t, tr, "https://api.example.com/")
				var oe *breaker.OpenError
				if errors.As(err, &oe) {
					refused.Add(1)
					if oe.State != breaker.HalfOpen {
						t.Errorf("refusal while probing: %v", oe)
					}
				}
			})
		}
		synctest.Wait() // every caller has returned or is the blocked probe
		if hits.Load() != breaker.DefaultMinCalls+1 || refused.Load() != 49 {
			t.Fatalf("hits %d, refused %d; want %d and 49", hits.Load(), refused.Load(), breaker.DefaultMinCalls+1)
		}
		close(release)
		wg.Wait()
		if s := tr.Snapshot(); s[0].State != breaker.Closed {
			t.Fatalf("after the good probe: %+v", s[0])
		}
	})
}

func TestCancelledProbeChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := openOverHungServer(t)
		// The caller gives up on the probe (a cancellation, which says
		// nothing of the server) while it hangs.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(300*time.Millisecond, cancel)
		if _, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/")); !errors.Is(err, context.Canceled) {
			t.Fatalf("probe: %v", err)
		}
		s := tr.Snapshot()[0]
		if s.State != breaker.Open || s.ProbesInFlight != 0 || s.RetryIn != 700*time.Millisecond || s.Trips != 1 {
			t.Fatalf("after the cancelled probe: %+v, want open with the next probe 1s after the last", s)
		}
	})
}

func TestUnansweredProbeDoesNotLengthen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := openOverHungServer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("probe: %v", err)
		}
		// The probe outlived its caller's deadline: a failed probe. The
		// next one was due a second after it went out, 4 s ago.
		if s := tr.Snapshot()[0]; s.State != breaker.Open || s.Trips != 1 || s.ProbesInFlight != 0 || s.RetryIn != 0 {
			t.Fatalf("after the unanswered probe: %+v", s)
		}
	})
}

func TestPanickingBaseFreesTheSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mode := atomic.Int32{}
		base := stub(func(*http.Request) (*http.Response, error) {
			if mode.Load() == 1 {
				panic("base transport bug")
			}
			return &http.Response{StatusCode: 500, Body: http.NoBody}, nil
		})
		tr := breaker.NewTransport(base, breaker.Config{})
		for range breaker.DefaultMinCalls {
			send(t, tr, "https://api.example.com/")
		}
		time.Sleep(2 * time.Second)
		mode.Store(1)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the base's panic was swallowed")
				}
			}()
			send(t, tr, "https://api.example.com/")
		}()
		if s := tr.Snapshot()[0]; s.ProbesInFlight != 0 || s.State != breaker.Open {
			t.Fatalf("a panicking probe kept its slot: %+v", s)
		}
	})
}

// openOverHungServer returns, inside a synctest bubble, a Transport whose
// breaker ten 500s have opened and whose first probe is due now (Jitter
// off), over a base that now hangs until the attempt's context ends.
func openOverHungServer(t *testing.T) *breaker.Transport {
	var hung atomic.Bool
	base := stub(func(r *http.Request) (*http.Response, error) {
		if !hung.Load() {
			return &http.Response{StatusCode: 500, Body: http.NoBody}, nil
		}
		<-r.Context().Done() // a probe that hangs until its caller gives up
		return nil, r.Context().Err()
	})
	tr := breaker.NewTransport(base, breaker.Config{Jitter: -1})
	for range breaker.DefaultMinCalls {
		send(t, tr, "https://api.example.com/")
	}
	time.Sleep(time.Second)
	hung.Store(true)
	return tr
}
