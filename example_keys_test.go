package rebound_test

import (
	"net/http"

	"github.com/rebound-http/rebound"
)

// Declare the hosts that deduplicate by Idempotency-Key (they run a
// repeated key once and answer the repeat from their record): toward them
// the chain may send a POST again after a reset or a 503, with the key it
// generated. Toward every other host it repeats a POST only when it
// provably was not sent, was answered 429, or carries a key you set.
func ExamplePolicy_keysHonored() {
	client := &http.Client{Transport: rebound.NewTransport(nil,
		rebound.WithHostPolicy("payments.example.com", rebound.Policy{KeysHonored: true}),
	)}
	_ = client
}
