package rebound_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// A client with every default. A POST gets an Idempotency-Key, made once
// per call, so a server can deduplicate; the retry loop repeats the POST
// after an ambiguous failure only toward hosts declared with
// Policy.KeysHonored.
func ExampleNewClient() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "key of %d characters", len(r.Header.Get("Idempotency-Key")))
	}))
	defer srv.Close()

	client := rebound.NewClient()
	resp, err := client.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"sku": 42}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	fmt.Println("same key on the caller's side:", len(idempotency.ResponseKey(resp)) == 36)
	// Output:
	// 201 key of 36 characters
	// same key on the caller's side: true
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

// The Transport returned by NewTransport exposes its links' state for
// metrics: every host's circuit breaker and the retry budget's balance.
func ExampleTransport_Breakers() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{MaxAttempts: 1}))
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}
	for range 11 {
		if resp, err := client.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}
	for _, b := range rt.Breakers() {
		fmt.Println(b.State, "after", b.Trips, "trip")
	}
	// Output: open after 1 trip
}

// A service in the middle of a stack wraps its handler in Layer and makes
// its calls below through rebound with the request's context: when those
// calls spent their retries, its 502 tells the caller above not to retry.
func ExampleLayer() {
	below := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer below.Close()
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{MaxAttempts: 2, BaseDelay: time.Millisecond}))
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	svc := httptest.NewServer(rebound.Layer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, below.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			http.Error(w, "below: "+resp.Status, http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, "ok")
	})))
	defer svc.Close()

	resp, err := http.Get(svc.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "X-Should-Retry:", resp.Header.Get("X-Should-Retry"))
	// Output: 502 X-Should-Retry: false
}
