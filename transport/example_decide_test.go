package transport_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// A decision hook retries a 200 whose JSON body says the job is still
// pending, reading the body with PeekBody so the caller still gets it
// whole. Every other outcome keeps the default verdict.
func ExampleDecideFunc() {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			fmt.Fprint(w, `{"status":"pending"}`)
			return
		}
		fmt.Fprint(w, `{"status":"done","id":42}`)
	}))
	defer srv.Close()

	pending := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
		if resp != nil && resp.StatusCode == http.StatusOK {
			b, err := transport.PeekBody(resp, 4<<10)
			if err == nil && bytes.Contains(b, []byte(`"status":"pending"`)) {
				return classify.Verdict{Outcome: classify.Retryable, Reason: "pending"}
			}
		}
		return def
	}
	rt := transport.New(nil, transport.Config{Decide: pending, BaseDelay: time.Millisecond})
	defer rt.CloseIdleConnections()

	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	attempts, _, _ := transport.Outcome(resp)
	fmt.Println(attempts, "attempts:", string(body))
	// Output:
	// 3 attempts: {"status":"done","id":42}
}
