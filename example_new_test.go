package rebound_test

import (
	"fmt"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// New reports an invalid configuration when the transport is built, not at
// the first request: here two patterns that are one host.
func ExampleNew() {
	_, err := rebound.New(nil,
		rebound.WithHostPolicy("api.example.com", rebound.Policy{}),
		rebound.WithHostPolicy("API.Example.com.", rebound.Policy{}),
	)
	fmt.Println(err)
	// Output:
	// rebound: WithHostPolicy("API.Example.com."): host pattern duplicated: "API.Example.com." is the same as "api.example.com" (both api.example.com)
}

// PolicyFor tells which policy a host gets, in any spelling of the host,
// with the values in effect (the defaults in place of unset fields). A
// pattern may name a port.
func ExampleTransport_PolicyFor() {
	rt, err := rebound.New(nil,
		rebound.WithHostPolicy("*.legacy.internal", rebound.Policy{
			Retry:                  transport.Config{MaxAttempts: 2},
			DisableIdempotencyKeys: true,
		}),
		rebound.WithHostPolicy("localhost:8081", rebound.Policy{Retry: transport.Config{MaxAttempts: 6}}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, host := range []string{"svc.legacy.internal", "SVC.Legacy.Internal.:8080", "api.example.com", "localhost:8081", "localhost:8080"} {
		pattern, p := rt.PolicyFor(host)
		fmt.Printf("%s: %q, %d attempts, backoff from %v\n", host, pattern, p.Retry.MaxAttempts, p.Retry.BaseDelay)
	}
	// Output:
	// svc.legacy.internal: "*.legacy.internal", 2 attempts, backoff from 100ms
	// SVC.Legacy.Internal.:8080: "*.legacy.internal", 2 attempts, backoff from 100ms
	// api.example.com: "", 4 attempts, backoff from 100ms
	// localhost:8081: "localhost:8081", 6 attempts, backoff from 100ms
	// localhost:8080: "", 4 attempts, backoff from 100ms
}
