package rebound_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// A client with every default: retries, backoff and Retry-After handling
// need no configuration.
func ExampleNewClient() {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "0") // "try again now"
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "hello")
	}))
	defer srv.Close()

	client := rebound.NewClient()
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", hits.Load(), "requests")
	// Output: 200 hello after 2 requests
}

// Wrapping an existing client's transport keeps its settings (proxy, TLS,
// timeouts) as the base of the chain.
func ExampleNewTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()

	client := &http.Client{Transport: http.DefaultTransport}
	client.Transport = rebound.NewTransport(client.Transport,
		rebound.WithRetry(transport.Config{MaxAttempts: 2, BaseDelay: time.Microsecond}),
		rebound.WithObserver(rebound.Observer{Retry: func(e transport.Event) {
			if e.Kind != transport.EventAttempt {
				fmt.Println(e.Kind, "after attempt", e.Attempt, "-", e.Reason)
			}
		}}),
	)
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("caller sees", resp.StatusCode)
	// Output:
	// retry after attempt 1 - status 502
	// give up after attempt 2 - status 502
	// caller sees 502
}
