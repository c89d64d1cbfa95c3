package reboundotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/rebound-http/rebound"
	reboundotel "github.com/rebound-http/rebound/otel"
	"github.com/rebound-http/rebound/transport"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A call whose first attempt gets a 503: two attempt spans, siblings under
// the caller's span, the second with http.request.resend_count, and the
// wait between them as an event on the caller's span.
func ExampleNew() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	rt, err := reboundotel.New(nil, reboundotel.Config{TracerProvider: tp},
		rebound.WithRetry(transport.Config{NoWait: true})) // no waiting in an example
	if err != nil {
		panic(err)
	}
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	ctx, call := tp.Tracer("example").Start(context.Background(), "call")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	call.End()

	for _, s := range spans.Ended() {
		line := s.Name()
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "http.response.status_code", "http.request.resend_count":
				line += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.Emit())
			}
		}
		for _, e := range s.Events() {
			line += " event:" + e.Name
		}
		fmt.Println(line)
	}
	// Output:
	// GET http.response.status_code=503
	// GET http.request.resend_count=1 http.response.status_code=200
	// call event:rebound.wait
}
