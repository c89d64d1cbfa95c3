// Command demo starts a flaky local server and calls it through a rebound
// client, printing each decision the chain makes: retries that turn
// failures into successes, a Retry-After the client honours, then an
// outage during which the circuit breaker stops the traffic and a probe
// finds the server back.
//
//	make demo
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/transport"
)

func main() {
	log.SetFlags(0)
	var hits atomic.Int64
	var down atomic.Bool
	// Every third request fails with 503; the fifth asks to wait a second;
	// while down, everything fails.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch {
		case down.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		case n == 5:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case n%3 == 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			fmt.Fprintf(w, "hello #%d", n)
		}
	}))
	defer srv.Close()

	start := time.Now()
	since := func() string { return fmt.Sprintf("%6.3fs", time.Since(start).Seconds()) }
	observer := rebound.Observer{
		Retry: func(e transport.Event) {
			switch e.Kind {
			case transport.EventRetry:
				how := "backoff"
				if e.FromServer {
					how = "server's Retry-After"
				}
				fmt.Printf("%s   attempt %d: %s -> retry in %v (%s)\n", since(), e.Attempt, e.Reason, e.Delay.Round(time.Millisecond), how)
			case transport.EventGiveUp:
				fmt.Printf("%s   attempt %d: %s -> give up: %s\n", since(), e.Attempt, e.Reason, e.Stop)
			}
		},
		Breaker: func(c breaker.StateChange) {
			fmt.Printf("%s   circuit %s -> %s: %s\n", since(), c.From, c.To, c.Reason)
		},
	}
	// A short open time keeps the demo brief; the default is 5 s.
	client := rebound.NewClient(rebound.WithObserver(observer),
		rebound.WithPolicy(rebound.Policy{Breaker: breaker.Config{OpenTimeout: time.Second}}))

	call := func(i int) {
		resp, err := client.Get(srv.URL + "/greeting")
		var open *breaker.OpenError
		switch {
		case errors.As(err, &open):
			fmt.Printf("%s call %d: failed fast, circuit open (no request sent)\n", since(), i)
		case err != nil:
			log.Fatalf("call %d: %v", i, err)
		default:
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("%s call %d: %d %q\n", since(), i, resp.StatusCode, body)
		}
	}

	fmt.Println("-- a flaky server: retries absorb the failures")
	for i := 1; i <= 4; i++ {
		call(i)
	}
	fmt.Printf("4 calls succeeded; the server saw %d requests.\n\n", hits.Load())

	fmt.Println("-- an outage: the breaker stops the traffic")
	down.Store(true)
	before := hits.Load()
	for i := 5; i <= 10; i++ {
		call(i)
	}
	fmt.Printf("6 calls during the outage cost the server %d requests.\n\n", hits.Load()-before)

	fmt.Println("-- recovery: after the open time one probe finds the server back")
	down.Store(false)
	time.Sleep(1100 * time.Millisecond)
	for i := 11; i <= 12; i++ {
		call(i)
	}
}
