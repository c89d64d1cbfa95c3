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

func TestOneProbeAmongConcurrentCallersThenRecovery(t *testing.T) {
	// A real server; the open time is 1 ns, so the first caller after the
	// trip probes. The server holds the probe until every other caller has
	// been refused.
	srv := newFlaky(t, http.StatusBadGateway)
	var got changes
	tr := newTransport(t, breaker.Config{OpenTimeout: time.Nanosecond, Jitter: -1, OnStateChange: got.add})
	for range 5 {
		send(t, tr, srv.URL)
	}
	if s := tr.Snapshot(); len(s) != 1 || s[0].State != breaker.Open {
		t.Fatalf("after 5 failures: %+v", s)
	}
	srv.status.Store(http.StatusOK)
	release, held := make(chan struct{}), make(chan struct{}, 50)
	srv.holdRequests(release, held)

	const callers = 50
	var (
		wg      sync.WaitGroup
		refused atomic.Int64
		passed  atomic.Int64
		refusal = make(chan struct{}, callers)
	)
	for range callers {
		wg.Go(func() {
			code, err := send(t, tr, srv.URL)
			switch {
			case errors.Is(err, breaker.ErrOpen):
				refused.Add(1)
				refusal <- struct{}{}
			case err == nil && code == 200:
				passed.Add(1)
			default:
				t.Errorf("caller: %d %v", code, err)
			}
		})
	}
	<-held // the probe reached the server
	for range callers - 1 {
		<-refusal
	}
	close(release)
	wg.Wait()
	if passed.Load() != 1 || refused.Load() != callers-1 || srv.hits.Load() != 6 {
		t.Fatalf("%d passed, %d refused, server hits %d; want 1, %d, 6", passed.Load(), refused.Load(), srv.hits.Load(), callers-1)
	}
	// The good probe closed the breaker: traffic flows again.
	srv.holdRequests(nil, nil)
	for range callers {
		wg.Go(func() {
			if code, err := send(t, tr, srv.URL); err != nil || code != 200 {
				t.Errorf("after recovery: %d %v", code, err)
			}
		})
	}
	wg.Wait()
	if n := srv.hits.Load(); n != 6+callers {
		t.Fatalf("server hits %d after recovery, want %d", n, 6+callers)
	}
	want := []breaker.State{breaker.Open, breaker.HalfOpen, breaker.Closed}
	chs := got.list()
	if len(chs) != len(want) {
		t.Fatalf("changes %+v", chs)
	}
	for i, ch := range chs {
		if ch.To != want[i] || ch.Host != srv.Listener.Addr().String() {
			t.Fatalf("change %d: %+v, want to %v", i, ch, want[i])
		}
	}
}

func TestOneProbeAfterTheOpenTime(t *testing.T) {
	// The timing half of the test above, in virtual time with a stub base:
	// nothing passes before 5 s; at 5 s exactly one of 50 callers probes.
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
		for range 5 {
			send(t, tr, "https://api.example.com/")
		}
		time.Sleep(5*time.Second - time.Millisecond)
		if _, err := send(t, tr, "https://api.example.com/"); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("1ms before the open time: %v", err)
		}
		time.Sleep(time.Millisecond)
		healthy.Store(true)
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range 50 {
			wg.Go(func() {
				if _, err := send(t, tr, "https://api.example.com/"); errors.Is(err, breaker.ErrOpen) {
					refused.Add(1)
				}
			})
		}
		synctest.Wait() // every caller has returned or is the blocked probe
		if hits.Load() != 6 || refused.Load() != 49 {
			t.Fatalf("hits %d, refused %d; want 6 and 49", hits.Load(), refused.Load())
		}
		close(release)
		wg.Wait()
		if s := tr.Snapshot(); s[0].State != breaker.Closed {
			t.Fatalf("after the good probe: %+v", s[0])
		}
	})
}

func TestCancelledProbeFreesTheSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, failing := halfOpenOverHungServer(t)
		// The caller gives up on the probe (a cancellation, which says
		// nothing of the server) while it hangs.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(time.Second, cancel)
		if _, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/")); !errors.Is(err, context.Canceled) {
			t.Fatalf("probe: %v", err)
		}
		if s := tr.Snapshot()[0]; s.State != breaker.HalfOpen || s.ProbesInFlight != 0 {
			t.Fatalf("after the cancelled probe: %+v", s)
		}
		failing.Store(true)
		send(t, tr, "https://api.example.com/") // the slot is free: a new probe, which fails
		if s := tr.Snapshot()[0]; s.State != breaker.Open || s.Trips != 2 {
			t.Fatalf("after the second probe: %+v", s)
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
		for range 5 {
			send(t, tr, "https://api.example.com/")
		}
		time.Sleep(5 * time.Second)
		mode.Store(1)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the base's panic was swallowed")
				}
			}()
			send(t, tr, "https://api.example.com/")
		}()
		if s := tr.Snapshot()[0]; s.ProbesInFlight != 0 {
			t.Fatalf("a panicking probe kept its slot: %+v", s)
		}
	})
}

func TestUnansweredProbeReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, _ := halfOpenOverHungServer(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("probe: %v", err)
		}
		// The probe outlived its caller's deadline: a failed probe, so the
		// circuit reopens for longer rather than wedging half-open.
		if s := tr.Snapshot()[0]; s.State != breaker.Open || s.Trips != 2 || s.ProbesInFlight != 0 {
			t.Fatalf("after the unanswered probe: %+v", s)
		}
	})
}

// halfOpenOverHungServer returns, inside a synctest bubble, a breaker that
// five 500s have opened and whose open time has passed, over a base that
// now hangs until the attempt's context ends. Storing true in the returned
// flag makes the base answer 500 again.
func halfOpenOverHungServer(t *testing.T) (*breaker.Transport, *atomic.Bool) {
	failing := new(atomic.Bool)
	failing.Store(true)
	base := stub(func(r *http.Request) (*http.Response, error) {
		if failing.Load() {
			return &http.Response{StatusCode: 500, Body: http.NoBody}, nil
		}
		<-r.Context().Done() // a probe that hangs until its caller gives up
		return nil, r.Context().Err()
	})
	tr := breaker.NewTransport(base, breaker.Config{})
	for range 5 {
		send(t, tr, "https://api.example.com/")
	}
	time.Sleep(5 * time.Second)
	failing.Store(false)
	return tr, failing
}
