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

// PolicyFor tells which policy a host gets, in any spelling of the host.
func ExampleTransport_PolicyFor() {
	rt, err := rebound.New(nil,
		rebound.WithHostPolicy("*.legacy.internal", rebound.Policy{
			Retry:                  transport.Config{MaxAttempts: 2},
			DisableIdempotencyKeys: true,
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, host := range []string{"svc.legacy.internal", "SVC.Legacy.Internal.:8080", "api.example.com"} {
		pattern, p := rt.PolicyFor(host)
		fmt.Printf("%s: %q, %d attempts\n", host, pattern, p.Retry.MaxAttempts)
	}
	// Output:
	// svc.legacy.internal: "*.legacy.internal", 2 attempts
	// SVC.Legacy.Internal.:8080: "*.legacy.internal", 2 attempts
	// api.example.com: "", 0 attempts
}
