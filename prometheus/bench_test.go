package reboundprom_test

import (
	"net/http"
	"testing"

	reboundprom "github.com/rebound-http/rebound/prometheus"
)

// BenchmarkDurationsBase is one attempt through Durations.Base over a
// stub: the canonical host, its series found, one observation.
func BenchmarkDurationsBase(b *testing.B) {
	base := reboundprom.NewDurations().Base(stub{})
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
