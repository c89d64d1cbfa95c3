package bench

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
)

// BenchmarkLoopback is BenchmarkOverhead over a real connection: each
// library sends through a pooled go-cleanhttp transport to an
// httptest.Server on 127.0.0.1 that reads the request and answers 200
// with a short body. The library's cost is the difference with "bare";
// on loopback it is a small part of the round trip, which is the point.
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	libs := []struct {
		name string
		wrap func(http.RoundTripper) http.RoundTripper
	}{
		{"bare", func(rt http.RoundTripper) http.RoundTripper { return rt }},
		{"rebound", func(rt http.RoundTripper) http.RoundTripper { return rebound.NewTransport(rt) }},
		{"rebound-nokeys", func(rt http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(rt, rebound.WithPolicy(rebound.Policy{DisableIdempotencyKeys: true}))
		}},
		{"retryablehttp", func(rt http.RoundTripper) http.RoundTripper { return newRetryable(rt, 0) }},
		{"failsafe", func(rt http.RoundTripper) http.RoundTripper { return newFailsafe(rt, nil) }},
	}
	body := make([]byte, 1024)
	for _, lib := range libs {
		for _, method := range []string{"GET", "POST1KiB"} {
			b.Run(lib.name+"/"+method, func(b *testing.B) {
				pool := cleanhttp.DefaultPooledTransport()
				defer pool.CloseIdleConnections()
				rt := lib.wrap(pool)
				var req *http.Request
				var err error
				if method == "GET" {
					req, err = http.NewRequest(http.MethodGet, srv.URL+"/v1/things", nil)
				} else {
					req, err = http.NewRequest(http.MethodPost, srv.URL+"/v1/things", bytes.NewReader(body))
				}
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if req.GetBody != nil {
						req.Body, _ = req.GetBody()
					}
					resp, err := rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d, want 200", resp.StatusCode)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	}
}
