package rebound_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
)

// okStub answers every request at once with the same 200, so a benchmark
// through it measures only the chain in front of it.
type okStub struct{ resp *http.Response }

func newOKStub() *okStub {
	return &okStub{resp: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}}}
}

func (s *okStub) RoundTrip(*http.Request) (*http.Response, error) { return s.resp, nil }

// BenchmarkRoundTrip compares the bare stub with the default chain in front
// of it, on the success path: the difference is the chain's overhead.
// "rebound-nokeys" is the chain without generated idempotency keys, whose
// POST cost is otherwise dominated by making the key; "rebound-nostats"
// the chain without the counters of Stats (WithoutStats);
// "rebound-observer" the chain with a LogObserver (logging nothing on this
// path) as well as the counters, "rebound-observer-nostats" without them. Each also reports the process's CPU time
// per call (cpu-ns/op), which other load on a shared machine disturbs far
// less than wall time.
func BenchmarkRoundTrip(b *testing.B) {
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	payload := make([]byte, 1024)
	post, _ := http.NewRequest(http.MethodPost, "http://api.test/v1/things", bytes.NewReader(payload))
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", newOKStub()},
		{"rebound", rebound.NewTransport(newOKStub())},
		{"rebound-nokeys", rebound.NewTransport(newOKStub(), rebound.WithPolicy(rebound.Policy{DisableIdempotencyKeys: true}))},
		{"rebound-nostats", rebound.NewTransport(newOKStub(), rebound.WithoutStats())},
		{"rebound-observer", rebound.NewTransport(newOKStub(), rebound.WithObserver(rebound.LogObserver(slog.New(slog.DiscardHandler))))},
		{"rebound-observer-nostats", rebound.NewTransport(newOKStub(), rebound.WithoutStats(), rebound.WithObserver(rebound.LogObserver(slog.New(slog.DiscardHandler))))},
	} {
		for _, r := range []struct {
			name string
			req  *http.Request
		}{{"GET", get}, {"POST1KiB", post}} {
			b.Run(c.name+"/"+r.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0, cpuOK := cpuTime()
				for b.Loop() {
					if _, err := c.rt.RoundTrip(r.req); err != nil {
						b.Fatal(err)
					}
				}
				if cpu1, ok := cpuTime(); ok && cpuOK {
					b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}

// BenchmarkLoopback measures throughput against a real server on
// 127.0.0.1, bare pooled transport against the chain, with parallel
// callers.
func BenchmarkLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	for _, name := range []string{"bare", "rebound"} {
		b.Run(name, func(b *testing.B) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			var rt http.RoundTripper = base
			if name == "rebound" {
				rt = rebound.NewTransport(base)
			}
			client := &http.Client{Transport: rt}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv.URL)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
