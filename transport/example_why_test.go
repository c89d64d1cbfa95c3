package transport_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/rebound-http/rebound/transport"
)

// A POST answered 503 is not sent again (it may have been processed), and
// Outcome says why, in the words the error, the give-up event and the log
// use; the stop still matches ErrFinal.
func ExampleWhyNotRepeated() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rt := transport.New(nil, transport.Config{})
	defer rt.CloseIdleConnections()

	resp, err := (&http.Client{Transport: rt}).Post(srv.URL, "text/plain", strings.NewReader("charge"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	attempts, stop, ok := transport.Outcome(resp)
	fmt.Println(resp.StatusCode, attempts, ok)
	fmt.Println(stop)
	fmt.Println("final:", errors.Is(stop, transport.ErrFinal))
	// Output:
	// 503 1 true
	// transport: not repeated: a non-idempotent request without an idempotency key (see Policy.KeysHonored)
	// final: true
}
