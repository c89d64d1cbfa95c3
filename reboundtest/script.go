package reboundtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// Step is one scripted answer of a Script: after Delay, a response with
// Status, Header and Body, or the error Err. The zero value answers 200
// with an empty body at once.
type Step struct {
	// Delay is how long the step takes to answer, in the caller's clock
	// (virtual time inside a testing/synctest bubble). If the request's
	// context ends first, the attempt fails with the context's cause, as
	// a server that does not answer in time. Zero answers at once.
	Delay time.Duration
	// Status is the response's status code. Zero means 200.
	Status int
	// Header holds the response's headers, copied into each response.
	// Nil means none.
	Header http.Header
	// Body is the response's body.
	Body string
	// Err, when non-nil, makes the attempt fail with it instead of
	// answering: ErrReset, ErrRefused, io.ErrUnexpectedEOF, or any error.
	// An Err that proves the request was never sent (classify.NotSent: a
	// refused dial, a DNS failure) leaves the request body unread and its
	// Call not Delivered.
	Err error
}

// Errors a Step can fail with, shaped like those of net/http's transport.
var (
	// ErrRefused is a refused dial: the request was not sent
	// (classify.NotSent), so even a POST may be retried after it.
	ErrRefused error = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	// ErrReset is a connection reset after the request was written: the
	// server may have processed it.
	ErrReset error = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
)

// ErrUnscripted is matched by the error of a request the Script has no
// step for (see UnscriptedError).
var ErrUnscripted = errors.New("reboundtest: no scripted step")

// UnscriptedError is the error of a request to a host whose steps have run
// out, or that has none, when Script.Then is nil. It matches
// ErrUnscripted. The zero value reads as an unscripted request to an
// unnamed host.
type UnscriptedError struct {
	// Host is the request's host, in canonical form.
	Host string
	// Calls is how many requests the host had received before this one.
	Calls int
}

// Error returns a message such as "reboundtest: no scripted step for
// request 4 to api.test".
func (e *UnscriptedError) Error() string {
	return fmt.Sprintf("reboundtest: no scripted step for request %d to %s", e.Calls+1, e.Host)
}

// Is reports whether target is ErrUnscripted.
func (e *UnscriptedError) Is(target error) bool { return target == ErrUnscripted }

// Call is a request a Script received, as Script.Calls reports it. The
// zero value records nothing.
type Call struct {
	// Host is the request URL's host, in canonical form ("api.test",
	// "127.0.0.1:8080").
	Host string
	// Method, URL and Header are the request's.
	Method string
	URL    string
	Header http.Header
	// Key is the idempotency key the request carried, as a server reads
	// it: its Idempotency-Key, else its X-Idempotency-Key; empty when it
	// had none. Header.Get may not find it: toward a host not declared
	// keys_honored, rebound sends a key it generated under the lower-case
	// header name (see idempotency.Transport), which a server reads as
	// usual but a lookup of the canonical name misses.
	Key string
	// Body is the request body as the Script read it; nil when the
	// request had none or was not Delivered.
	Body []byte
	// Attempt is the retry loop's attempt number (transport.AttemptFrom),
	// 1 for a first attempt or a request that did not come through a
	// retry loop.
	Attempt int
	// Step is the index of the step that answered in the host's steps, or
	// -1 when Then answered or nothing did.
	Step int
	// Delivered reports that the request reached the "server": false when
	// its step's error proves it was not sent.
	Delivered bool
}

// Script is a scripted, in-memory http.RoundTripper: each host answers
// its requests with its Steps, in turn, and the Script records every
// request (Calls). It does no I/O, so it works inside testing/synctest
// bubbles, where a real server's network I/O does not block durably and
// hangs the test; a Step's Delay passes in the bubble's virtual time.
//
//	script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
//		"api.test": {
//			{Status: 503, Header: http.Header{"Retry-After": {"2"}}},
//			{Err: reboundtest.ErrReset},
//			{Status: 200, Body: `{"id": 1}`},
//		},
//	}}
//	client := &http.Client{Transport: rebound.NewTransport(script)}
//
// Hosts are matched in canonical form (lower case, no trailing dot, no
// default port), first with the port, then by name alone: "api.test"
// answers https://api.test:8443 too. It reads each request's body to its
// end and closes it, as a server would; every response's body counts as
// open until closed (Open), so a test can check that nothing leaks.
//
// A Script is safe for concurrent use; concurrent requests to one host
// take its steps in the order they arrive. It must not be copied after
// first use. The zero value answers every request with ErrUnscripted.
type Script struct {
	// Hosts maps a host to its steps. It must not be changed after the
	// first request.
	Hosts map[string][]Step
	// Then, when non-nil, answers every request for which Hosts has no
	// step left. Nil makes such requests fail with an *UnscriptedError.
	Then *Step

	once  sync.Once
	steps map[string][]Step // by canonical host

	mu    sync.Mutex
	next  map[string]int // host → steps taken
	calls []Call
	open  int
}

// RoundTrip answers req with the next step of its host.
func (s *Script) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errors.New("reboundtest: nil request or URL")
	}
	s.once.Do(s.index)
	host := hostname.FromURL(req.URL)
	call := Call{Host: host, Method: req.Method, URL: req.URL.String(), Header: req.Header.Clone(),
		Key: requestKey(req.Header), Attempt: transport.AttemptFrom(req.Context()).N, Step: -1}
	key, steps := s.lookup(host)

	s.mu.Lock()
	if s.next == nil {
		s.next = make(map[string]int)
	}
	taken := s.next[key]
	var step *Step
	if taken < len(steps) {
		step, call.Step = &steps[taken], taken
	} else {
		step = s.Then
	}
	s.next[key] = taken + 1
	s.mu.Unlock()

	var err error
	if step == nil {
		err = &UnscriptedError{Host: host, Calls: taken}
	} else if !classify.NotSent(step.Err) {
		call.Delivered = true
		call.Body, err = readBody(req)
	}
	if err == nil && step.Delay > 0 {
		err = wait(req.Context(), step.Delay)
	}
	var resp *http.Response
	if err == nil {
		if step.Err != nil {
			err = step.Err
		} else {
			resp = s.response(req, step)
		}
	}
	if !call.Delivered && req.Body != nil {
		req.Body.Close()
	}

	s.mu.Lock()
	s.calls = append(s.calls, call)
	if resp != nil {
		s.open++
	}
	s.mu.Unlock()
	return resp, err
}

// index canonicalises the hosts of Hosts.
func (s *Script) index() {
	s.steps = make(map[string][]Step, len(s.Hosts))
	for h, steps := range s.Hosts {
		s.steps[hostname.Canonical(strings.TrimSpace(h))] = steps
	}
}

// lookup returns the key and steps of host: with its port, else by name.
func (s *Script) lookup(host string) (string, []Step) {
	if steps, ok := s.steps[host]; ok {
		return host, steps
	}
	name := hostname.Name(host)
	if steps, ok := s.steps[name]; ok {
		return name, steps
	}
	return host, nil
}

// Calls returns every request received so far, in order.
func (s *Script) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Count returns how many requests to host (in any spelling of it) were
// delivered so far: the requests a real server would have seen.
func (s *Script) Count(host string) int {
	host = hostname.Canonical(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Delivered && (c.Host == host || hostname.Name(c.Host) == host) {
			n++
		}
	}
	return n
}

// Open returns how many response bodies the Script handed out that have
// not been closed: zero once the code under test has closed every body it
// received, and the retry loop every body it discarded.
func (s *Script) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// response builds step's response to req.
func (s *Script) response(req *http.Request, step *Step) *http.Response {
	code := step.Status
	if code == 0 {
		code = http.StatusOK
	}
	h := step.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: int64(len(step.Body)), Request: req,
		Body: &body{Reader: strings.NewReader(step.Body), script: s},
	}
}

// body is a response body that tells its Script when it is closed.
type body struct {
	io.Reader
	script *Script
	once   sync.Once
}

func (b *body) Close() error {
	b.once.Do(func() {
		b.script.mu.Lock()
		b.script.open--
		b.script.mu.Unlock()
	})
	return nil
}

// readBody reads req's body to its end and closes it.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

// wait waits d, or until ctx ends, then returns its cause.
func wait(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// requestKey returns the idempotency key in h as a server reads it, the
// header name in any case: Idempotency-Key, else X-Idempotency-Key.
func requestKey(h http.Header) string {
	for _, name := range [...]string{classify.HeaderIdempotencyKey, "idempotency-key", classify.HeaderXIdempotencyKey, "x-idempotency-key"} {
		if vs := h[name]; len(vs) > 0 && vs[0] != "" {
			return vs[0]
		}
	}
	return ""
}
