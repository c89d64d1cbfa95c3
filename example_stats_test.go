package rebound_test

import (
	"encoding/json"
	"expvar"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// Stats counts every call; expvar publishes the counters at /debug/vars
// (net/http's DefaultServeMux serves it once expvar is imported).
func ExampleTransport_Stats() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	rt := rebound.NewTransport(nil, rebound.WithRetry(transport.Config{NoWait: true})) // no waiting in an example
	defer rt.CloseIdleConnections()

	// In a program: expvar.Publish("rebound", expvar.Func(func() any { return rt.Stats() }))
	stats := expvar.Func(func() any { return rt.Stats() })

	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	s := rt.Stats()
	fmt.Println("calls", s.Total.Calls, "attempts", s.Total.Attempts, "retries", s.Total.Retries)

	var published rebound.Stats // what /debug/vars serves, as JSON
	if err := json.Unmarshal([]byte(stats.String()), &published); err != nil {
		panic(err)
	}
	fmt.Println("published", published.Hosts[0].Host == s.Hosts[0].Host, published.Total.Attempts)
	// Output:
	// calls 1 attempts 2 retries map[status 503:1]
	// published true 2
}
