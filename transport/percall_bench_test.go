package transport_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/transport"
)

// okRT answers every request with the same 200 at once.
type okRT struct{ resp *http.Response }

func (o okRT) RoundTrip(*http.Request) (*http.Response, error) { return o.resp, nil }

// BenchmarkPerCall is the retry loop alone on a healthy GET: "before" runs
// before the process has made any per-call setting (the loop does not look
// for one), "plain" and "attempts" after (a call without one, and one
// with WithAttempts, each pay a context lookup). The sub-benchmarks must
// run in this order; no other benchmark of this package runs after them.
func BenchmarkPerCall(b *testing.B) {
	rt := transport.New(okRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}, transport.Config{})
	plain, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	run := func(name string, req *http.Request) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0, ok := cpuTime()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
			if cpu1, _ := cpuTime(); ok {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
	run("before", plain)
	with, _ := http.NewRequestWithContext(transport.WithAttempts(context.Background(), 2), http.MethodGet, "http://api.test/v1/things", nil)
	run("plain", plain)
	run("attempts", with)
}

// A healthy call allocates nothing with a decision hook set, nor with a
// per-call setting in its context.
func TestHealthyCallAllocatesNothing(t *testing.T) {
	hook := func(req *http.Request, resp *http.Response, err error, def classify.Verdict) classify.Verdict {
		return def
	}
	ok := okRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	plain, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	with, _ := http.NewRequestWithContext(transport.WithAttemptTimeout(transport.WithAttempts(context.Background(), 2), 0), http.MethodGet, "http://api.test/v1/things", nil)
	for name, c := range map[string]struct {
		rt  http.RoundTripper
		req *http.Request
	}{
		"hook":     {transport.New(ok, transport.Config{Decide: hook}), plain},
		"per-call": {transport.New(ok, transport.Config{}), with},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := c.rt.RoundTrip(c.req); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, allocs)
		}
	}
}
