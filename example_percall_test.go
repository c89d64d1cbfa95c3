package rebound_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

// unavailable is a server that answers 503 to everything, counting hits.
func unavailable(hits *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
}

// fastRetries is a policy with a negligible backoff, so the examples run
// quickly.
var fastRetries = rebound.WithRetry(transport.Config{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})

// One call makes two attempts, whatever its host's policy says.
func ExampleWithAttempts() {
	var hits atomic.Int64
	srv := unavailable(&hits)
	defer srv.Close()
	client := rebound.NewClient(fastRetries)

	ctx := rebound.WithAttempts(context.Background(), 2)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", hits.Load(), "attempts")
	// Output:
	// 503 after 2 attempts
}

// A call that must fail fast makes one attempt; the caller gets its
// response as it came.
func ExampleNoRetry() {
	var hits atomic.Int64
	srv := unavailable(&hits)
	defer srv.Close()
	client := rebound.NewClient(fastRetries)

	req, _ := http.NewRequestWithContext(rebound.NoRetry(context.Background()), http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	attempts, stop, _ := transport.Outcome(resp)
	fmt.Println(resp.StatusCode, hits.Load(), attempts, errors.Is(stop, transport.ErrAttemptsExhausted))
	// Output:
	// 503 1 1 true
}

// Each attempt of this call gets 50 ms to answer: the first hangs, the
// second answers at once.
func ExampleWithAttemptTimeout() {
	var hits atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			select { // hang until the client gives up on this attempt
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "fast")
	}))
	defer srv.Close()
	defer close(release)
	client := rebound.NewClient(fastRetries)

	ctx := rebound.WithAttemptTimeout(context.Background(), 50*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body), "on attempt", hits.Load())
	// Output:
	// fast on attempt 2
}

// This POST goes out without a generated Idempotency-Key, for an endpoint
// that rejects headers it does not know; other POSTs keep theirs.
func ExampleWithoutKey() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "key: %q", r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()
	client := rebound.NewClient()

	req, _ := http.NewRequestWithContext(rebound.WithoutKey(context.Background()), http.MethodPost, srv.URL, strings.NewReader("{}"))
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// key: ""
}
