package reboundotel_test

import (
	"io"
	"net/http"
	"testing"

	reboundotel "github.com/rebound-http/rebound/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkBase is one attempt through Base over a stub, its body read
// and closed (which ends its span): the span, the propagation, the
// duration histogram and the bounded host lookup, with the SDK's
// providers exporting nowhere.
func BenchmarkBase(b *testing.B) {
	in, err := reboundotel.NewInstrumentation(reboundotel.Config{
		TracerProvider: sdktrace.NewTracerProvider(),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		Propagator:     propagation.TraceContext{},
	})
	if err != nil {
		b.Fatal(err)
	}
	base := in.Base(okStub{})
	req, err := http.NewRequest(http.MethodGet, "http://api.example.com/orders", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := base.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
