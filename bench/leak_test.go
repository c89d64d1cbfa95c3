package bench

import (
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/transport"
	"github.com/sony/gobreaker/v2"
)

// leakCalls is how many calls the leak probe makes per operation.
const leakCalls = 20

// BenchmarkLeakProbe measures what each library leaves behind after
// leakCalls calls to a server that answers 503 to everything, once the
// caller has closed every response it got and the idle connections:
// conns-left is TCP connections still open on the server side,
// goroutines-left the goroutines the process has more than before. A
// library that closes the responses it retries leaves 0 of both; each
// response it forgets holds a connection and its two goroutines (read and
// write loops) until the server goes away. Only the client's goroutines
// are counted. Backoff is made negligible, as
// in TestAmplification. ns/op is the whole probe, not a figure of merit.
func BenchmarkLeakProbe(b *testing.B) {
	fast := transport.Config{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}
	libs := []struct {
		name string
		wrap func(http.RoundTripper) http.RoundTripper
	}{
		{"bare", func(rt http.RoundTripper) http.RoundTripper { return rt }},
		{"rebound", func(rt http.RoundTripper) http.RoundTripper {
			return rebound.NewTransport(rt, rebound.WithRetry(fast))
		}},
		{"retryablehttp", func(rt http.RoundTripper) http.RoundTripper { return newRetryable(rt, time.Nanosecond) }},
		{"failsafe", func(rt http.RoundTripper) http.RoundTripper { return newFailsafe(rt, nil) }},
		{"gobreaker", func(rt http.RoundTripper) http.RoundTripper {
			return newGobreaker(rt, gobreaker.Settings{Name: "x"})
		}},
	}
	for _, lib := range libs {
		b.Run(lib.name, func(b *testing.B) {
			var conns, gors float64
			for i := 0; i < b.N; i++ {
				c, g := leakProbe(b, lib.wrap)
				conns += float64(c)
				gors += float64(g)
			}
			b.ReportMetric(conns/float64(b.N), "conns-left/op")
			b.ReportMetric(gors/float64(b.N), "goroutines-left/op")
		})
	}
}

// leakProbe runs one probe and returns the connections and goroutines
// left. It cleans up after itself (closing, through a janitor, the bodies
// the library forgot) before it returns.
func leakProbe(b *testing.B, wrap func(http.RoundTripper) http.RoundTripper) (conns, goroutines int) {
	b.StopTimer()
	settle()
	before := runtime.NumGoroutine()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	srv.Start()
	pool := cleanhttp.DefaultPooledTransport()
	jan := &janitor{next: pool}
	rt := wrap(jan)
	b.StartTimer()
	for range leakCalls {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/things", nil)
		if err != nil {
			b.Fatal(err)
		}
		closeOutcome(rt.RoundTrip(req))
	}
	b.StopTimer()
	pool.CloseIdleConnections()
	settle()
	mu.Lock()
	conns = len(open)
	mu.Unlock()
	// The client's goroutines only: the server's accept loop and one
	// goroutine per connection it still holds are not the library's.
	goroutines = max(0, runtime.NumGoroutine()-before-1-conns)
	jan.closeAll()
	pool.CloseIdleConnections()
	srv.Close()
	b.StartTimer()
	return conns, goroutines
}

// settle waits until the goroutine count has stopped falling (goroutines
// of closed connections exit asynchronously), at most half a second.
func settle() {
	last := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n >= last {
			return
		}
		last = n
	}
}
