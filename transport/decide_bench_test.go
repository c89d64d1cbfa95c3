package transport_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// BenchmarkDecide is the retry loop alone on a healthy GET, without a
// decision hook and with a typical one (a path check and a status switch
// that return the default verdict).
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
	ok := okRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"nil", transport.New(ok, transport.Config{})},
		{"hook", transport.New(ok, transport.Config{Decide: hook})},
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
