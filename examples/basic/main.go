// Command basic shows rebound as a drop-in: an existing http.Client keeps
// its settings and gets the default chain as its transport. A local
// server fails twice with 503, then answers; the caller sees one call.
//
//	go run ./examples/basic
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
)

func main() {
	srv := flakyServer(2)
	defer srv.Close()
	if _, err := run(os.Stdout, srv.URL); err != nil {
		log.Fatal(err)
	}
}

// flakyServer answers 503 to its first failures requests, then 200.
func flakyServer(failures int64) *httptest.Server {
	var hits atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := hits.Add(1); n <= failures {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"quote":"hello"}`)
	}))
}

// result is what one call returned, for the test.
type result struct {
	Status   int
	Body     string
	Attempts int
}

// run calls url through a client wrapped with rebound and prints what the
// caller sees. opts are added to the chain's (tests make waits zero).
func run(w io.Writer, url string, opts ...rebound.Option) (result, error) {
	// Your client, with its own settings...
	client := &http.Client{Timeout: 10 * time.Second}
	// ...gets the chain around its transport (nil: a pooled default).
	client.Transport = rebound.NewTransport(client.Transport, opts...)
	defer client.CloseIdleConnections()

	// Bound every call with its context: retries never outlive it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/quote", nil)
	if err != nil {
		return result{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{}, err // a *transport.Error inside: attempts and cause
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	res := result{Status: resp.StatusCode, Body: string(body), Attempts: 1}
	if n, _, ok := transport.Outcome(resp); ok {
		res.Attempts = n
	}
	fmt.Fprintf(w, "%d %s after %d attempts\n", res.Status, res.Body, res.Attempts)
	return res, nil
}
