package percall_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/percall"
	"github.com/rebound-http/rebound/reboundtest"
)

// One call makes two attempts, whatever its host's policy says; another
// makes one and gets its outcome as it came.
func Example() {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client := rebound.NewClient(reboundtest.NoWait()) // options: rebound.With…, set once
	defer client.CloseIdleConnections()

	for _, ctx := range []context.Context{
		percall.Attempts(context.Background(), 2), // per call: call.…, on the request's context
		percall.NoRetry(context.Background()),
	} {
		hits.Store(0)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, "after", hits.Load(), "attempts")
	}
	// Output:
	// 503 after 2 attempts
	// 503 after 1 attempts
}

// A job persisted with its key sends the same key when it is re-run, so
// the server recognises the repeat; an endpoint that rejects unknown
// headers gets none.
func ExampleKey() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("key %q\n", r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()
	client := rebound.NewClient()
	defer client.CloseIdleConnections()

	for _, ctx := range []context.Context{
		percall.Key(context.Background(), "job-42"),
		percall.NoKey(context.Background()),
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, http.NoBody)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// Output:
	// key "job-42"
	// key ""
}
