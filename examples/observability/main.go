// Command observability shows what a rebound chain tells about itself
// with the core module alone: a LogObserver writes one line per retry and
// give-up (method and path, never the query string), Transport.Stats
// counts calls, attempts, retries and give-ups per host, and expvar
// publishes those counters at /debug/vars. A local server fails twice with
// 503, then answers; a second endpoint is down for good.
//
//	go run ./examples/observability
//
// OpenTelemetry and Prometheus live in modules of their own, so that the
// core depends on neither: see ExampleNew in otel/ (spans per attempt,
// events on the caller's span) and ExampleNewCollector in prometheus/ (a
// Collector over Stats).
package main

import (
	"context"
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rebound-http/rebound"
)

func main() {
	srv := server(2)
	defer srv.Close()
	if _, err := run(os.Stdout, srv.URL); err != nil {
		log.Fatal(err)
	}
}

// server answers /v1/quote with 503 to its first failures requests, then
// 200, and /v1/down with 503 always.
func server(failures int64) *httptest.Server {
	var hits atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/down" || hits.Add(1) <= failures {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"quote":"hello"}`)
	}))
}

// current is the Transport whose Stats expvar publishes as "rebound".
var (
	current   atomic.Pointer[rebound.Transport]
	publishMu sync.Once
)

// publish makes /debug/vars show rt's Stats under "rebound". expvar names
// are process-wide and can be published once: a program with one client
// publishes it in main.
func publish(rt *rebound.Transport) {
	current.Store(rt)
	publishMu.Do(func() {
		expvar.Publish("rebound", expvar.Func(func() any { return current.Load().Stats() }))
	})
}

// run makes three calls through a logged, counted chain and prints the
// log, the counters and what /debug/vars serves. opts are added to the
// chain's (tests make waits zero). It returns the counters.
func run(w io.Writer, url string, opts ...rebound.Option) (rebound.Stats, error) {
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // steady output
			}
			return a
		},
	}))
	rt := rebound.NewTransport(nil, append([]rebound.Option{rebound.WithObserver(rebound.LogObserver(logger))}, opts...)...)
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}
	publish(rt)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, path := range []string{"/v1/quote?token=secret", "/v1/quote", "/v1/down"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return rebound.Stats{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return rebound.Stats{}, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintf(w, "GET %s: %d\n", req.URL.Path, resp.StatusCode)
	}

	s := rt.Stats()
	for _, h := range s.Hosts {
		fmt.Fprintf(w, "host %s: %d calls, %d attempts, retries %v, give-ups %v, breaker %s\n",
			h.Host, h.Calls, h.Attempts, sorted(h.Retries), sorted(h.GiveUps), h.Breaker)
	}

	// What an operator reads at /debug/vars.
	vars := httptest.NewServer(expvar.Handler())
	defer vars.Close()
	resp, err := http.Get(vars.URL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	var published struct {
		Rebound rebound.Stats `json:"rebound"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&published); err != nil {
		return s, err
	}
	fmt.Fprintf(w, "/debug/vars rebound: %d calls, %d attempts\n", published.Rebound.Total.Calls, published.Rebound.Total.Attempts)
	return s, nil
}

// sorted formats counts in key order.
func sorted(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := "{"
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s: %d", k, m[k])
	}
	return out + "}"
}
