package bench

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound/breaker"
	"github.com/sony/gobreaker/v2"
)

// constStub answers every request with the same 200. Unlike okStub it
// never writes, so it is safe for concurrent use; it is only for links
// that do not modify the response (the breakers).
type constStub struct{ resp *http.Response }

func newConstStub() constStub {
	return constStub{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
}

func (s constStub) RoundTrip(*http.Request) (*http.Response, error) { return s.resp, nil }

// BenchmarkBreakerGate measures a closed breaker's cost per call (allow,
// send, record the outcome) in front of a stub that answers 200 at once:
// rebound's breaker.Transport with its default Config against
// sony/gobreaker's default Settings wrapped in the RoundTripper of
// gobreakerTransport; "bare" is the stub alone.
//
// serial is one goroutine; parallel is b.RunParallel on one host, so every
// goroutine contends for the same breaker; parallel-hosts gives each
// goroutine its own host. rebound keeps one breaker per host, so the
// hosts do not contend; the gobreaker wrapper has one breaker, as
// gobreaker has no per-host registry, so its parallel-hosts is its
// parallel.
func BenchmarkBreakerGate(b *testing.B) {
	gates := []struct {
		name string
		new  func(http.RoundTripper) http.RoundTripper
	}{
		{"bare", func(rt http.RoundTripper) http.RoundTripper { return rt }},
		{"rebound", func(rt http.RoundTripper) http.RoundTripper { return breaker.NewTransport(rt, breaker.Config{}) }},
		{"gobreaker", func(rt http.RoundTripper) http.RoundTripper { return newGobreaker(rt, gobreaker.Settings{Name: "x"}) }},
	}
	for _, g := range gates {
		b.Run(g.name+"/serial", func(b *testing.B) {
			rt := g.new(newConstStub())
			req := newBenchRequest(b, "GET")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, hosts := range []bool{false, true} {
			name := g.name + "/parallel"
			if hosts {
				name += "-hosts"
			}
			b.Run(name, func(b *testing.B) {
				rt := g.new(newConstStub())
				var next atomic.Int64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					host := "api.test"
					if hosts {
						host = fmt.Sprintf("api%d.test", next.Add(1))
					}
					req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v1/things", nil)
					if err != nil {
						b.Error(err)
						return
					}
					for pb.Next() {
						if _, err := rt.RoundTrip(req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
