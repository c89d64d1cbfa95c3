package transport_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"time"

	"github.com/rebound-http/rebound/transport"
)

// The retry loop alone, in front of any RoundTripper. A call that fails on
// every attempt returns an *transport.Error that says how many attempts
// were made and still unwraps to the cause.
func ExampleNew() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is refused

	client := &http.Client{Transport: transport.New(nil, transport.Config{
		MaxAttempts: 3,
		BaseDelay:   time.Microsecond,
	})}
	_, err := client.Get("http://" + addr)

	var te *transport.Error
	if errors.As(err, &te) {
		fmt.Println(te.Attempts, "attempts;", te.Stop+";", te.Reason)
	}
	var opErr *net.OpError
	fmt.Println("cause reachable:", errors.As(err, &opErr))
	// Output:
	// 3 attempts; attempts exhausted; connection refused
	// cause reachable: true
}

// Outcome tells why the loop handed back a response it gave up on, with
// no observer: here the server asks for an hour, over the 60 s cap.
func ExampleOutcome() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rt := transport.New(nil, transport.Config{})
	defer rt.CloseIdleConnections()

	resp, err := (&http.Client{Transport: rt}).Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	attempts, stop, ok := transport.Outcome(resp)
	fmt.Println(resp.StatusCode, attempts, ok, stop)
	fmt.Println("over the cap:", errors.Is(stop, transport.ErrHintOverCap))
	// Output:
	// 503 1 true transport: server wait over cap
	// over the cap: true
}

// Each way the loop ends has a sentinel, and the cause stays reachable:
// here every attempt is refused at the dial.
func ExampleErrAttemptsExhausted() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	rt := transport.New(nil, transport.Config{MaxAttempts: 2, BaseDelay: time.Microsecond})
	_, err := (&http.Client{Transport: rt}).Get("http://" + addr)
	fmt.Println(errors.Is(err, transport.ErrAttemptsExhausted), errors.Is(err, syscall.ECONNREFUSED), os.IsTimeout(err))
	// Output:
	// true true false
}
