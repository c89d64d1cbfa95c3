// Command custom-rules adds rules of its own to rebound's defaults with a
// decision hook (transport.DecideFunc), and changes single calls through
// their context:
//
//   - a 200 whose JSON body says {"status":"pending"} is retried until the
//     job is done (the hook reads the body with transport.PeekBody, which
//     leaves it whole for the caller);
//
//   - a 403 carrying X-Retryable: true is retried, even for a POST: the
//     server says so, and the hook's verdict is the user's word;
//
//   - nothing under /v1/reports/ is ever retried;
//
//   - one call makes two attempts (percall.Attempts), one none
//     (percall.NoRetry), one gives each attempt 50 ms
//     (percall.AttemptTimeout), one POST goes without a generated key
//     (percall.NoKey).
//
//     go run ./examples/custom-rules
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/percall"
	"github.com/rebound-http/rebound/transport"
)

// Reasons of the rules' verdicts: short constants, as they become metric
// labels and log fields.
const (
	reasonPending   = "job pending"
	reasonRetryable = "server says retryable"
	reasonNoReports = "reports never retried"
)

// maxPeek bounds how much of a body the hook reads: a status field is near
// the start.
const maxPeek = 4 << 10

// decide is the hook: the rules above, and the default verdict for every
// other outcome, so the default statuses (429, 503 ...) stay retryable
// without being listed again.
func decide(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
	if strings.HasPrefix(req.URL.Path, "/v1/reports/") {
		if def.Outcome == classify.Retryable {
			return classify.Verdict{Outcome: classify.Final, Reason: reasonNoReports}
		}
		return def
	}
	if resp == nil {
		return def
	}
	switch resp.StatusCode {
	case http.StatusOK:
		body, err := transport.PeekBody(resp, maxPeek)
		if err == nil && bytes.Contains(body, []byte(`"status":"pending"`)) {
			return classify.Verdict{Outcome: classify.Retryable, Reason: reasonPending}
		}
	case http.StatusForbidden:
		if resp.Header.Get("X-Retryable") == "true" {
			return classify.Verdict{Outcome: classify.Retryable, Reason: reasonRetryable}
		}
	}
	return def
}

func main() {
	s := startServer()
	defer s.close()
	if _, err := run(os.Stdout, s.srv.URL); err != nil {
		log.Fatal(err)
	}
}

// server answers each path with its own behaviour and counts the hits.
type server struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
	keys map[string]string // path → the last Idempotency-Key received
	stop chan struct{}     // releases hanging handlers at close
}

func startServer() *server {
	s := &server{hits: map[string]int{}, keys: map[string]string{}, stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *server) close() {
	close(s.stop)
	s.srv.Close()
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.hits[r.URL.Path]++
	n := s.hits[r.URL.Path]
	s.keys[r.URL.Path] = r.Header.Get("Idempotency-Key")
	s.mu.Unlock()
	switch r.URL.Path {
	case "/v1/jobs/7": // pending twice, then done
		if n <= 2 {
			fmt.Fprint(w, `{"status":"pending"}`)
			return
		}
		fmt.Fprint(w, `{"status":"done","rows":1200}`)
	case "/v1/exports": // a 403 the server marks retryable, once
		if n == 1 {
			w.Header().Set("X-Retryable", "true")
			http.Error(w, "token rotating", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"export":"e-1"}`)
	case "/v1/slow": // the first attempt hangs
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-s.stop:
			}
			return
		}
		fmt.Fprint(w, "fast this time")
	case "/v1/legacy":
		w.WriteHeader(http.StatusCreated)
	default: // /v1/reports/daily, /v1/flaky, /v1/flaky-once: always 503
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}
}

func (s *server) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// call is one call the example makes, and what it got.
type call struct {
	Name     string
	Method   string
	Path     string
	Ctx      func(context.Context) context.Context
	Status   int
	Body     string
	Attempts int
}

// calls are the example's calls, in order.
func calls() []call {
	same := func(ctx context.Context) context.Context { return ctx }
	return []call{
		{Name: "pending job polled", Method: "GET", Path: "/v1/jobs/7", Ctx: same},
		{Name: "403 X-Retryable", Method: "POST", Path: "/v1/exports", Ctx: same},
		{Name: "reports not retried", Method: "GET", Path: "/v1/reports/daily", Ctx: same},
		{Name: "Attempts 2", Method: "GET", Path: "/v1/flaky", Ctx: func(ctx context.Context) context.Context {
			return percall.Attempts(ctx, 2)
		}},
		{Name: "NoRetry", Method: "GET", Path: "/v1/flaky-once", Ctx: percall.NoRetry},
		{Name: "AttemptTimeout", Method: "GET", Path: "/v1/slow", Ctx: func(ctx context.Context) context.Context {
			return percall.AttemptTimeout(ctx, 50*time.Millisecond)
		}},
		{Name: "NoKey", Method: "POST", Path: "/v1/legacy", Ctx: percall.NoKey},
	}
}

// run makes the calls against url with the rules installed on every
// policy, and prints what each got. extra options are added (tests make
// waits zero).
func run(w io.Writer, url string, extra ...rebound.Option) ([]call, error) {
	opts := append([]rebound.Option{
		// EditPolicies reaches the default policy and every host policy
		// (a policy file's too), whatever the order of the options.
		rebound.EditPolicies(func(_ string, p *rebound.Policy) { p.Retry.Decide = decide }),
	}, extra...)
	rt, err := rebound.New(nil, opts...)
	if err != nil {
		return nil, err
	}
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	out := calls()
	for i := range out {
		c := &out[i]
		ctx, cancel := context.WithTimeout(c.Ctx(context.Background()), 5*time.Second)
		var body io.Reader
		if c.Method == http.MethodPost {
			body = strings.NewReader(`{}`)
		}
		req, err := http.NewRequestWithContext(ctx, c.Method, url+c.Path, body)
		if err != nil {
			cancel()
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil {
			return nil, err
		}
		c.Status, c.Body, c.Attempts = resp.StatusCode, strings.TrimSpace(string(b)), 1
		if n, _, ok := transport.Outcome(resp); ok {
			c.Attempts = n
		}
		fmt.Fprintf(w, "%-20s %-4s %-18s %d after %d attempt(s): %s\n", c.Name, c.Method, c.Path, c.Status, c.Attempts, c.Body)
	}
	return out, nil
}
