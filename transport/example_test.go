package transport_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
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
