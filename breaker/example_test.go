package breaker_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// A Transport alone in front of the default base: after ten failures in a
// row a fresh host's breaker opens (the hook runs before the tenth
// response is returned) and calls fail fast, without reaching the server,
// but for one probe a second. A 503 with a Retry-After would not have
// counted: that is a live server asking for time.
func ExampleNewTransport() {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	tr := breaker.NewTransport(nil, breaker.Config{
		OnStateChange: func(ch breaker.StateChange) {
			fmt.Printf("%s → %s: %s\n", ch.From, ch.To, ch.Reason)
		},
	})
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	for i := range 12 {
		resp, err := client.Get(srv.URL)
		var oe *breaker.OpenError
		switch {
		case errors.As(err, &oe):
			fmt.Println("refused, not sent:", errors.Is(err, classify.ErrNotSent))
		case err != nil:
			fmt.Println(err)
		case i >= 8:
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		default:
			resp.Body.Close()
		}
	}
	fmt.Println("server hits:", hits.Load())
	// Output:
	// 503
	// closed → open: 10 of the last 10 attempts failed
	// 503
	// refused, not sent: true
	// refused, not sent: true
	// server hits: 10
}

// A Breaker guards any operation with its two-step API: Allow before, done
// with the outcome after.
func ExampleBreaker_Allow() {
	b := breaker.New("db-primary", breaker.Config{})
	query := func() error { return errors.New("connection refused") }

	for range 11 {
		done, err := b.Allow()
		if err != nil {
			fmt.Println(err.(*breaker.OpenError).Host, "is", b.State())
			continue
		}
		if err := query(); err != nil {
			done(classify.Unhealthy)
			continue
		}
		done(classify.Healthy)
	}
	// Output:
	// db-primary is open
}

// Snapshot reports each tracked host's state and counts, for metrics.
func ExampleTransport_Snapshot() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	tr := breaker.NewTransport(nil, breaker.Config{})
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, path := range []string{"/", "/fail", "/", "/fail", "/fail", "/fail", "/fail", "/fail"} {
		if resp, err := client.Get(srv.URL + path); err == nil {
			resp.Body.Close()
		}
	}
	for _, s := range tr.Snapshot() {
		// Evidence: how far the closed breaker is toward a trip (1).
		fmt.Printf("%s, evidence %.2f\n", s.State, s.Evidence)
	}
	// Output:
	// closed, evidence 0.26
}
