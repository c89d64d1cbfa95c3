// Command idempotent-post sends a POST whose response is lost after the
// server has run it, and shows it retried without a duplicate: the client
// chain gives the POST an Idempotency-Key once per call, the host's policy
// declares that it honours keys (KeysHonored), and the server's
// idempotency middleware answers the retry from its record instead of
// creating the order again.
//
//	go run ./examples/idempotent-post
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

func main() {
	for _, honoured := range []bool{true, false} {
		s := startShop()
		if _, err := run(os.Stdout, s.srv.URL, honoured); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("  the server created %d order(s) from %d request(s)\n", s.orders.Load(), s.hits.Load())
		s.close()
	}
}

// shop is the server: an orders handler behind the idempotency middleware,
// behind a network that loses the first response it carries.
type shop struct {
	srv    *httptest.Server
	orders atomic.Int64 // orders created by the handler
	hits   atomic.Int64 // requests that reached the server
}

func startShop() *shop {
	s := &shop{}
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := s.orders.Add(1) // the side effect that must not run twice
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":%d}`, n)
	})
	// The middleware runs a keyed POST once per caller and key, and
	// replays its stored response to a retry.
	orders := idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{})(create)
	s.srv = httptest.NewServer(s.loseFirstResponse(orders))
	return s
}

// loseFirstResponse runs h for every request, but drops the connection
// instead of sending the first response: the order exists, the client
// never hears of it.
func (s *shop) loseFirstResponse(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hits.Add(1) > 1 {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(httptest.NewRecorder(), r) // run it, keep the answer
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
}

func (s *shop) close() { s.srv.Close() }

// result is what the caller saw, for the test.
type result struct {
	Status   int
	Body     string
	Replayed bool
	Attempts int
	Err      error
}

// run POSTs an order to url. keysHonored declares, in the host's policy,
// that the server deduplicates by key; without it the chain does not
// repeat a POST whose response was lost, and the caller gets the error.
func run(w io.Writer, url string, keysHonored bool, extra ...rebound.Option) (result, error) {
	opts := append([]rebound.Option{
		// The pattern is the server's host; a real service names its own
		// ("payments.example.com"), or says keys_honored in a policy file.
		rebound.WithHostPolicy("127.0.0.1", rebound.Policy{KeysHonored: keysHonored}),
	}, extra...)
	rt, err := rebound.New(nil, opts...)
	if err != nil {
		return result{}, err
	}
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/orders", strings.NewReader(`{"sku":42}`))
	if err != nil {
		return result{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(w, "keys honoured %v: the call failed: %v\n", keysHonored, err)
		return result{Err: err}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	res := result{Status: resp.StatusCode, Body: string(body), Attempts: 1,
		Replayed: resp.Header.Get(idempotency.HeaderReplayed) == "true"}
	if n, _, ok := transport.Outcome(resp); ok {
		res.Attempts = n
	}
	fmt.Fprintf(w, "keys honoured %v: %d %s after %d attempts, replayed %v, key %s\n",
		keysHonored, res.Status, res.Body, res.Attempts, res.Replayed, idempotency.ResponseKey(resp))
	return res, nil
}
