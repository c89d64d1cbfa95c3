package reboundtest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
)

// A Script answers each host with its steps in turn and records what it
// received. Here the chain, with every wait zero, retries a 503 and a
// reset and returns the third answer. (Inside a testing/synctest bubble
// NoWait is not needed: the waits pass in virtual time.)
func ExampleScript() {
	script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
		"api.test": {
			{Status: 503, Header: http.Header{"Retry-After": {"2"}}},
			{Err: reboundtest.ErrReset},
			{Status: 200, Body: `{"id": 1}`},
		},
	}}
	client := &http.Client{Transport: rebound.NewTransport(script, reboundtest.NoWait())}

	resp, err := client.Get("http://api.test/v1/things/1")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	for _, c := range script.Calls() {
		fmt.Println("attempt", c.Attempt, c.Method, c.URL)
	}
	fmt.Println("bodies left open:", script.Open())
	// Output:
	// 200 {"id": 1}
	// attempt 1 GET http://api.test/v1/things/1
	// attempt 2 GET http://api.test/v1/things/1
	// attempt 3 GET http://api.test/v1/things/1
	// bodies left open: 0
}

// Route sends a production host name to a test server, so the chain
// applies that host's policy (here 2 attempts instead of the default 4)
// and keys its breaker by the name, as it would in production.
func ExampleRoute() {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base, err := reboundtest.Route(map[string]*httptest.Server{"payments.test": srv})
	if err != nil {
		fmt.Println(err)
		return
	}
	rt := rebound.NewTransport(base, reboundtest.NoWait(),
		rebound.WithHostPolicy("payments.test", rebound.Policy{Retry: transport.Config{MaxAttempts: 2}}))
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	resp, err := client.Get("https://payments.test/v1/balance")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", hits.Load(), "attempts; breaker for", rt.Breakers()[0].Host)
	// Output:
	// 503 after 2 attempts; breaker for payments.test
}
