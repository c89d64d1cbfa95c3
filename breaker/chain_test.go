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
	"github.com/rebound-http/rebound/transport"
)

// In the chain the retry loop sits outside the breaker: a trip mid-call
// ends the loop with the previous attempt's real response, and a call that
// meets an open breaker first gets the *OpenError.
func TestInsideTheRetryLoop(t *testing.T) {
	srv := newFlaky(t, http.StatusServiceUnavailable)
	br := newTransport(t, breaker.Config{})
	client := &http.Client{Transport: transport.New(br, transport.Config{
		BaseDelay: time.Microsecond, // keep the real server's test fast
		MaxDelay:  time.Microsecond,
	})}

	for call := 1; call <= 2; call++ { // 4 attempts each, all 503
		resp, err := client.Get(srv.URL)
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("call %d: %v %v", call, resp, err)
		}
		resp.Body.Close()
		if n := srv.hits.Load(); n != int64(4*call) {
			t.Fatalf("after call %d: %d attempts, want %d", call, n, 4*call)
		}
	}

	resp, err := client.Get(srv.URL) // attempt 10 trips; the retry is refused
	if err != nil {
		t.Fatalf("call 3: the caller got the gate's error %v, want the real 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || srv.hits.Load() != 10 {
		t.Fatalf("call 3: status %d, server hits %d; want 503 and 10", resp.StatusCode, srv.hits.Load())
	}

	_, err = client.Get(srv.URL) // refused at once
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || oe.Host != srv.Listener.Addr().String() || srv.hits.Load() != 10 {
		t.Fatalf("call 4: %v, server hits %d", err, srv.hits.Load())
	}
}

// With the retry loop's real backoff, in virtual time: a server that
// recovers while the breaker is open is probed once a second later, and
// the next calls flow.
func TestRetryLoopAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hits atomic.Int64
		var healthy atomic.Bool
		base := stub(func(*http.Request) (*http.Response, error) {
			hits.Add(1)
			if healthy.Load() {
				return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
			}
			return nil, errNet
		})
		client := &http.Client{Transport: transport.New(breaker.NewTransport(base, breaker.Config{Jitter: -1}), transport.Config{})}
		get := func() (*http.Response, error) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.example.com/", nil)
			return client.Do(req)
		}
		for range 3 {
			if resp, err := get(); err == nil {
				resp.Body.Close()
			}
		}
		if n := hits.Load(); n != 10 {
			t.Fatalf("%d attempts reached the base, want 10 before the trip", n)
		}
		healthy.Store(true)
		time.Sleep(time.Second)
		resp, err := get()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the open time: %v %v", resp, err)
		}
		resp.Body.Close()
		if n := hits.Load(); n != 11 {
			t.Fatalf("%d attempts, want one probe more", n)
		}
	})
}
