package rebound_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// BenchmarkDecide is the healthy GET through the default chain with no
// decision hook and with one set (a typical hook: a path check and a
// status switch that returns the default verdict).
func BenchmarkDecide(b *testing.B) {
	hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
		if strings.HasPrefix(req.URL.Path, "/v1/reports/") {
			return classify.Verdict{Outcome: classify.Final, Reason: "reports"}
		}
		if resp != nil && resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Retryable") == "true" {
			return classify.Verdict{Outcome: classify.Retryable, Reason: "x-retryable"}
		}
		return def
	}
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"nil", rebound.NewTransport(newOKStub())},
		{"hook", rebound.NewTransport(newOKStub(), rebound.WithRetry(transport.Config{Decide: hook}))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0, ok := cpuTime()
			for b.Loop() {
				if _, err := c.rt.RoundTrip(get); err != nil {
					b.Fatal(err)
				}
			}
			if cpu1, _ := cpuTime(); ok {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
