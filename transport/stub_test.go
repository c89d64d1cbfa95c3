package transport_test

import (
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rebound-http/rebound/transport"
)

// stub is a base RoundTripper that answers from a script and records every
// attempt: when it arrived, its request and its body.
type stub struct {
	mu      sync.Mutex
	times   []time.Time
	reqs    []*http.Request
	bodies  []string
	respond func(n int, req *http.Request) (*http.Response, error)
}

func (s *stub) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		body = string(b)
	}
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	s.reqs = append(s.reqs, req)
	s.bodies = append(s.bodies, body)
	n := len(s.times)
	s.mu.Unlock()
	return s.respond(n, req)
}

func (s *stub) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

// gaps returns the time between consecutive attempts.
func (s *stub) gaps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var g []time.Duration
	for i := 1; i < len(s.times); i++ {
		g = append(g, s.times[i].Sub(s.times[i-1]))
	}
	return g
}

// statuses answers the given statuses in turn, then the last one forever.
func statuses(codes ...int) func(int, *http.Request) (*http.Response, error) {
	return func(n int, req *http.Request) (*http.Response, error) {
		code := codes[min(n, len(codes))-1]
		return response(req, code, http.StatusText(code)+" #"+itoa(n)), nil
	}
}

func response(req *http.Request, code int, body string, header ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{
		StatusCode: code, Status: http.StatusText(code), Header: h, Request: req,
		Body: &trackedBody{Reader: strings.NewReader(body)}, ContentLength: int64(len(body)),
	}
}

// trackedBody records whether it was closed.
type trackedBody struct {
	io.Reader
	mu     sync.Mutex
	closed bool
}

func (b *trackedBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *trackedBody) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// recorder collects observer events.
type recorder struct {
	mu  sync.Mutex
	all []transport.Event
}

func (r *recorder) Observe(e transport.Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	r.mu.Unlock()
}

func (r *recorder) events() []transport.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transport.Event(nil), r.all...)
}

// kinds summarises the events as "attempt 1, retry 1, attempt 2, give up 2".
func (r *recorder) kinds() []string {
	var out []string
	for _, e := range r.events() {
		out = append(out, e.Kind.String()+" "+itoa(e.Attempt))
	}
	return out
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// errorReader fails every read with err.
type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }
