package breaker_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// okResponse is the preallocated response of the benchmarks' stub base.
var okResponse = &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}}

// okBase answers every request with okResponse, allocating nothing.
var okBase = stub(func(*http.Request) (*http.Response, error) { return okResponse, nil })

// BenchmarkGateClosed measures a closed breaker's allow and record for one
// host: Allow, then done(Healthy).
func BenchmarkGateClosed(b *testing.B) {
	br := breaker.New("https://example.com", breaker.Config{})
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(classify.Healthy)
	}
}

// BenchmarkGateParallelHosts measures RoundTrip through one Transport with
// a stub base from parallel goroutines, each to its own host, to show that
// the gate has no global lock.
func BenchmarkGateParallelHosts(b *testing.B) {
	tr := breaker.NewTransport(okBase, breaker.Config{})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		url := "https://h" + strconv.FormatInt(next.Add(1), 10) + ".example.com/"
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		for pb.Next() {
			if _, err := tr.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGateParallelOneHost measures a closed breaker's allow and
// record from parallel goroutines to one host: a healthy host's outcomes
// only read the shared score word.
func BenchmarkGateParallelOneHost(b *testing.B) {
	br := breaker.New("https://example.com", breaker.Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			done(classify.Healthy)
		}
	})
}

// BenchmarkRoundTripStub measures RoundTrip for one host through
// NewTransport in front of a stub base that returns a preallocated 200.
func BenchmarkRoundTripStub(b *testing.B) {
	tr := breaker.NewTransport(okBase, breaker.Config{})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://example.com/", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStubBase measures the stub base alone, the baseline of
// BenchmarkRoundTripStub.
func BenchmarkStubBase(b *testing.B) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://example.com/", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := okBase.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRejectOpen measures the fail-fast path of an open breaker.
func BenchmarkRejectOpen(b *testing.B) {
	// An hour between probes, so that no probe passes during the run.
	tr := breaker.NewTransport(status(http.StatusInternalServerError), breaker.Config{OpenTimeout: time.Hour})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://example.com/", nil)
	for range breaker.DefaultMinCalls {
		resp, _ := tr.RoundTrip(req)
		resp.Body.Close()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(req); err == nil {
			b.Fatal("breaker did not open")
		}
	}
}

// BenchmarkNewHost measures tracking hosts beyond the bound: every request
// names a new host, so each one evicts an idle breaker.
func BenchmarkNewHost(b *testing.B) {
	tr := breaker.NewTransport(okBase, breaker.Config{MaxHosts: 1000})
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		reqs[i], _ = http.NewRequest(http.MethodGet, "https://h"+strconv.Itoa(i)+".example.com/", nil)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.RoundTrip(reqs[i%len(reqs)])
		i++
	}
	runtime.KeepAlive(tr)
}

// BenchmarkClockRead measures the monotonic clock read that recording an
// outcome makes (time.Since), the largest part of BenchmarkGateClosed.
func BenchmarkClockRead(b *testing.B) {
	start := time.Now()
	var d time.Duration
	for b.Loop() {
		d += time.Since(start)
	}
	runtime.KeepAlive(d)
}
