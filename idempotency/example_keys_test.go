package idempotency_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/idempotency"
)

// A generated key always goes out, but it licenses a retry after an
// ambiguous failure only toward a server declared to deduplicate by key;
// a key the caller gives always does.
func ExampleConfig_keysHonored() {
	send := func(cfg idempotency.Config, req *http.Request) {
		rt := idempotency.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			fmt.Printf("key sent: %t, licenses a retry: %t\n",
				idempotency.ResponseKey(&http.Response{Request: r}) != "", classify.Idempotent(r))
			return &http.Response{StatusCode: http.StatusCreated, Body: http.NoBody, Request: r}, nil
		}), cfg)
		if _, err := rt.RoundTrip(req); err != nil {
			fmt.Println(err)
		}
	}
	post := func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, "https://api.example.com/orders", strings.NewReader(`{"sku":42}`))
		return req
	}

	send(idempotency.Config{}, post())                  // a server not known to deduplicate
	send(idempotency.Config{KeysHonored: true}, post()) // one declared to
	req := post()
	req.Header.Set("Idempotency-Key", "order-42") // the caller's own key
	send(idempotency.Config{}, req)
	// Output:
	// key sent: true, licenses a retry: false
	// key sent: true, licenses a retry: true
	// key sent: true, licenses a retry: true
}
