package transport_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/rebound-http/rebound/transport"
)

// A call whose first attempt hangs is answered by its hedge, sent after
// the hedge delay (fixed here; learned from the host's latency when Delay
// is zero). The hung attempt is cancelled.
func ExampleHedgeConfig() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Attempt") == "1" {
			<-r.Context().Done() // the first attempt hangs until cancelled
			return
		}
		fmt.Fprintf(w, "answered by attempt %s", r.Header.Get("X-Attempt"))
	}))
	defer srv.Close()

	rt := transport.New(nil, transport.Config{
		AttemptHeader: "X-Attempt",
		Hedge:         &transport.HedgeConfig{Delay: 50 * time.Millisecond},
		Observer: transport.ObserverFunc(func(e transport.Event) {
			if e.Kind == transport.EventHedge {
				fmt.Println("hedge: attempt", e.Attempt)
			}
		}),
	})
	defer rt.CloseIdleConnections()
	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// hedge: attempt 2
	// answered by attempt 2
}

// Attempt timeouts learned from the host: after 100 answers, an attempt
// that has waited 3 × the host's p99 (at least 200 ms) is cancelled and
// retried; before that, AttemptTimeout applies.
func ExampleLearnedTimeoutConfig() {
	rt := transport.New(nil, transport.Config{
		AttemptTimeout: 2 * time.Second, // until learned, and an upper bound after
		LearnedTimeout: &transport.LearnedTimeoutConfig{},
	})
	client := &http.Client{Transport: rt}
	_ = client
}
