// Command demo starts a flaky local server and calls it through a rebound
// client, printing each decision the chain makes: retries that turn
// failures into successes, and a Retry-After the client honours.
//
//	make demo
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

func main() {
	log.SetFlags(0)
	var hits atomic.Int64
	// Every third request fails with 503; the fifth asks to wait a second.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch {
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
	observer := rebound.Observer{Retry: func(e transport.Event) {
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
	}}
	client := rebound.NewClient(rebound.WithObserver(observer))

	for i := 1; i <= 4; i++ {
		resp, err := client.Get(srv.URL + "/greeting")
		if err != nil {
			log.Fatalf("call %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s call %d: %d %q\n", since(), i, resp.StatusCode, body)
	}
	fmt.Printf("4 calls succeeded; the server saw %d requests.\n", hits.Load())
}
