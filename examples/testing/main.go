// Command testing is code that uses rebound, and its tests show how to
// test such code with package reboundtest: inside testing/synctest
// bubbles against a scripted transport (virtual time, exact timing), and
// against a real local server with every wait made zero.
//
//	go run ./examples/testing
//	go test ./examples/testing
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
)

// Quote is what the quote service returns.
type Quote struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

// quotes is the code under test: a client of a quote service.
type quotes struct {
	client *http.Client
	base   string // "https://quotes.example"
}

// newQuotes returns a client of the service at base whose requests go
// through rebound in front of rt (nil: the network).
func newQuotes(base string, rt http.RoundTripper, opts ...rebound.Option) *quotes {
	return &quotes{client: &http.Client{Transport: rebound.NewTransport(rt, opts...)}, base: base}
}

// latest returns the latest quote of symbol, within 2 seconds.
func (q *quotes) latest(ctx context.Context, symbol string) (Quote, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.base+"/v1/quotes/"+symbol, nil)
	if err != nil {
		return Quote{}, err
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return Quote{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Quote{}, fmt.Errorf("quotes: %s", resp.Status)
	}
	var quote Quote
	if err := json.NewDecoder(resp.Body).Decode(&quote); err != nil {
		return Quote{}, fmt.Errorf("quotes: %w", err)
	}
	return quote, nil
}

// alert posts a price alert: a POST, which the chain repeats only when it
// is provably safe.
func (q *quotes) alert(ctx context.Context, symbol string, above float64) error {
	body := fmt.Sprintf(`{"symbol":%q,"above":%g}`, symbol, above)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.base+"/v1/alerts", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("quotes: %s", resp.Status)
	}
	return nil
}

func main() {
	// A local service that asks the first caller to come back in a second.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `{"symbol":"RBND","price":42.5}`)
	}))
	defer srv.Close()
	q := newQuotes(srv.URL, nil)
	start := time.Now()
	quote, err := q.latest(context.Background(), "RBND")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %.2f after %d requests, %v\n", quote.Symbol, quote.Price, hits.Load(), time.Since(start).Round(100*time.Millisecond))
}
