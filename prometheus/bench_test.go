package reboundprom_test

import (
	"net/http"
	"testing"

	reboundprom "github.com/rebound-http/rebound/prometheus"
)

// BenchmarkDurationsBase is one attempt through Durations.Base over a
// stub that answers one response it made once, so what is measured is
// the timing alone: the canonical host, its series found, one
// observation.
func BenchmarkDurationsBase(b *testing.B) {
	base := reboundprom.NewDurations().Base(fixed{&http.Response{StatusCode: http.StatusOK, Body: http.NoBody}})
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
		resp.Body.Close()
	}
}

// fixed answers every request with its response.
type fixed struct{ r *http.Response }

func (f fixed) RoundTrip(*http.Request) (*http.Response, error) { return f.r, nil }
