// Command perhost gives three hosts their own policies from a JSON policy
// file: payments retries twice and declares that it honours idempotency
// keys, search retries up to five times with short backoff, the legacy
// hosts are never retried and get no generated keys. Each host is a local
// server that always answers 503, so the hits show each policy's attempts.
//
//	go run ./examples/perhost
package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
)

//go:embed policies.json
var policyFile []byte

// hosts are the example's hosts; each is served by a local server.
// other.example has no policy of its own: it gets the default.
var hosts = []string{"payments.example", "search.example", "billing.legacy.example", "other.example"}

func main() {
	f := startFleet()
	defer f.close()
	if _, err := run(os.Stdout, f, nil); err != nil {
		log.Fatal(err)
	}
}

// fleet is one local server per host, answering 503 to everything and
// counting hits by method, and the requests that carried an
// Idempotency-Key.
type fleet struct {
	srv  map[string]*httptest.Server
	hits map[string]*counts
}

// counts are one server's hits.
type counts struct{ get, post, keyed atomic.Int64 }

// Hits is what one host's server saw, for the test.
type Hits struct{ GET, POST, Keyed int64 }

func startFleet() *fleet {
	f := &fleet{srv: map[string]*httptest.Server{}, hits: map[string]*counts{}}
	for _, h := range hosts {
		c := new(counts)
		f.hits[h] = c
		f.srv[h] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				c.post.Add(1)
			} else {
				c.get.Add(1)
			}
			if r.Header.Get("Idempotency-Key") != "" {
				c.keyed.Add(1)
			}
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}))
	}
	return f
}

func (f *fleet) close() {
	for _, s := range f.srv {
		s.Close()
	}
}

// dialer sends every connection for a host of the fleet to its server,
// as DNS would in production.
func (f *fleet) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		if s, ok := f.srv[host]; ok {
			addr = s.Listener.Addr().String()
		}
		return d.DialContext(ctx, network, addr)
	}
}

// run loads the policy file, sends a GET and a POST to every host and
// prints, per host, the pattern of the policy it got and what its server
// saw. extra options are added after the file's (tests make waits zero).
func run(w io.Writer, f *fleet, extra []rebound.Option) (map[string]Hits, error) {
	opts, err := rebound.ParsePolicyFile(policyFile) // rebound.LoadPolicyFile(path) reads a file
	if err != nil {
		return nil, err // every error with its line, column, host and field
	}
	base := cleanhttp.DefaultPooledTransport()
	base.DialContext = f.dialer()
	rt, err := rebound.New(base, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	for _, h := range hosts {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader(`{"name":"thing"}`)
			}
			req, err := http.NewRequest(method, "http://"+h+"/v1/things", body)
			if err != nil {
				return nil, err
			}
			resp, err := client.Do(req)
			if err != nil {
				return nil, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	hits := map[string]Hits{}
	for _, h := range hosts {
		pattern, p := rt.PolicyFor(h)
		if pattern == "" {
			pattern = "(default)"
		}
		c := f.hits[h]
		hits[h] = Hits{GET: c.get.Load(), POST: c.post.Load(), Keyed: c.keyed.Load()}
		fmt.Fprintf(w, "%-23s policy %-17s max_attempts %d: GET hits %d, POST hits %d, keyed %d\n",
			h, pattern, p.Retry.MaxAttempts, hits[h].GET, hits[h].POST, hits[h].Keyed)
	}
	return hits, nil
}
