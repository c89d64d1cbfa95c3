package bench

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/rebound-http/rebound"
)

// BenchmarkOverhead measures what each library adds to one successful
// call: every sub-benchmark sends through a stub base that answers 200 at
// once, so "library − bare" is the library's own cost on the success path.
//
// rebound is its current default chain (rebound.NewTransport), so the
// figure follows the chain as links are added; rebound-nokeys is the same
// chain without generated idempotency keys, whose making (a UUIDv4 and a
// copy of the request to carry it) dominates the POST. go-retryablehttp
// is its default client used as a RoundTripper; failsafe-go is
// failsafehttp's retry policy with 3 retries.
//
// Every operation is a whole call as a program makes it: the POST gets a
// fresh 1 KiB body from GetBody (both peers read the body they are given,
// so a body drained by the previous operation would flatter them), and the
// response body is closed. Both steps happen for "bare" too, so they cancel
// out of the difference.
func BenchmarkOverhead(b *testing.B) {
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
	for _, lib := range libs {
		for _, method := range []string{"GET", "POST1KiB"} {
			b.Run(lib.name+"/"+method, func(b *testing.B) {
				req := newBenchRequest(b, method)
				rt := lib.wrap(newOKStub())
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
					resp.Body.Close()
				}
			})
		}
	}
}

// newBenchRequest returns a GET without a body, or a POST whose 1 KiB body
// is a bytes.Reader, so http.NewRequest gives it GetBody.
func newBenchRequest(tb testing.TB, method string) *http.Request {
	tb.Helper()
	var (
		req *http.Request
		err error
	)
	switch method {
	case "GET":
		req, err = http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	case "POST1KiB":
		req, err = http.NewRequest(http.MethodPost, "http://api.test/v1/things", bytes.NewReader(make([]byte, 1024)))
	default:
		tb.Fatalf("unknown method %q", method)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return req
}
