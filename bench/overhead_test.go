package bench

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"

	"github.com/rebound-http/rebound"
	"github.com/sony/gobreaker/v2"
)

// peer is one library under comparison, built in front of a base
// RoundTripper.
type peer struct {
	name string
	wrap func(http.RoundTripper) http.RoundTripper
}

// overheadPeers are the libraries every overhead benchmark compares:
//
//   - bare: the base alone;
//   - rebound: its default chain (rebound.NewTransport), so the figure
//     follows the chain as links are added;
//   - rebound-nokeys: the same without generated idempotency keys;
//   - retryablehttp: go-retryablehttp's default client as a RoundTripper;
//   - failsafe: failsafehttp's retry policy with 3 retries;
//   - gobreaker: sony/gobreaker's default breaker in a 20-line RoundTripper
//     (gobreakerTransport);
//   - floor: the same four links as rebound's chain doing only what none
//     of them can avoid (see floor.go).
var overheadPeers = []peer{
	{"bare", func(rt http.RoundTripper) http.RoundTripper { return rt }},
	{"rebound", func(rt http.RoundTripper) http.RoundTripper { return rebound.NewTransport(rt) }},
	{"rebound-nokeys", func(rt http.RoundTripper) http.RoundTripper {
		return rebound.NewTransport(rt, rebound.WithPolicy(rebound.Policy{DisableIdempotencyKeys: true}))
	}},
	{"retryablehttp", func(rt http.RoundTripper) http.RoundTripper { return newRetryable(rt, 0) }},
	{"failsafe", func(rt http.RoundTripper) http.RoundTripper { return newFailsafe(rt, nil) }},
	{"gobreaker", func(rt http.RoundTripper) http.RoundTripper { return newGobreaker(rt, gobreaker.Settings{Name: "x"}) }},
	{"floor", func(rt http.RoundTripper) http.RoundTripper { return newFloor(rt) }},
}

// shuffled returns the peers in a random order, a new one for every
// process: `make bench` runs one process per round, so that over the
// rounds no library always runs first, or always right after another's
// garbage.
func shuffled(peers []peer) []peer {
	out := append([]peer(nil), peers...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// benchBody is the 1 KiB body of every POST.
var benchBody = make([]byte, 1024)

// BenchmarkOverhead measures what each library adds to one successful
// call made the way a program makes it: every iteration builds a fresh
// request with http.NewRequest (a POST carries a fresh 1 KiB
// bytes.Reader body, so it has GetBody, and gets a generated key from
// rebound's chain), sends it, reads the response body to its end and
// closes it. The base is a stub that answers a preallocated 200 at once,
// so "library − bare" is the library's own cost on the success path.
//
// call=Do goes through http.Client.Do, as callers do; call=RoundTrip
// calls the library's RoundTripper directly. The names are
// call/method/lib so that benchstat can put libraries side by side
// (benchstat -col /lib); cmd/overhead turns a run into the table of
// docs/benchmarks.md, overhead over bare and its ratio to the peers'.
func BenchmarkOverhead(b *testing.B) {
	for _, call := range []string{"Do", "RoundTrip"} {
		for _, method := range []string{"GET", "POST"} {
			for _, p := range shuffled(overheadPeers) {
				b.Run("call="+call+"/method="+method+"/lib="+p.name, func(b *testing.B) {
					benchFresh(b, p.wrap(newOKStub()), call, method, "http://api.test/v1/things")
				})
			}
		}
	}
}

// benchFresh runs b's loop: a fresh request per iteration to url through
// rt, by http.Client.Do or RoundTrip, with its response body read and
// closed.
func benchFresh(b *testing.B, rt http.RoundTripper, call, method, url string) {
	client := &http.Client{Transport: rt}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		req := freshRequest(b, method, url)
		var (
			resp *http.Response
			err  error
		)
		if call == "Do" {
			resp, err = client.Do(req)
		} else {
			resp, err = rt.RoundTrip(req)
		}
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, want 200", resp.StatusCode)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns, deferred, reports it per operation as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	cpu0, ok := cpuTime()
	return func() {
		if cpu1, _ := cpuTime(); ok && b.N > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	}
}

// freshRequest returns a new GET without a body, or a new POST whose
// 1 KiB body is a bytes.Reader (so http.NewRequest gives it GetBody).
func freshRequest(tb testing.TB, method, url string) *http.Request {
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(benchBody)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// BenchmarkOverheadReused is the earlier way of measuring, kept for
// comparison and labelled as such in every table: the same *http.Request
// is sent on every iteration, straight to RoundTrip (only the POST's body
// is renewed from GetBody). Reusing the request keeps its URL, header map
// and context in cache and leaves the cost of building a request out, so
// it flatters whatever reads the request, and bare most of all; callers
// do not send requests this way. See docs/benchmarks.md for why the two
// disagree.
func BenchmarkOverheadReused(b *testing.B) {
	for _, method := range []string{"GET", "POST"} {
		for _, p := range shuffled(overheadPeers) {
			b.Run("call=RoundTrip-reused/method="+method+"/lib="+p.name, func(b *testing.B) {
				req := freshRequest(b, method, "http://api.test/v1/things")
				rt := p.wrap(newOKStub())
				b.ReportAllocs()
				defer reportCPU(b)()
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
	switch method {
	case "GET", "POST":
		return freshRequest(tb, method, "http://api.test/v1/things")
	}
	tb.Fatalf("unknown method %q", method)
	return nil
}

// evictBuf is written over by BenchmarkOverheadEvicted between calls.
var evictBuf = make([]byte, 1<<20)

// BenchmarkOverheadEvicted is BenchmarkOverheadReused's GET with the
// CPU's caches pushed out between calls: before each call the loop
// writes one byte in every 64 of an evict-sized buffer, so that the
// library's state and code must come back from a farther cache, as they
// do in a program that does other work between its calls. bare pays for
// the writes too, so "library − bare" is still the library's cost, now
// with a cold cache; a library whose figure rises with evict has more
// state or code on its path. It is not part of make bench:
//
//	cd bench && go test -run '^$' -bench OverheadEvicted -count 10 | go run ./cmd/overhead -against gobreaker
func BenchmarkOverheadEvicted(b *testing.B) {
	for _, kib := range []int{0, 32, 64, 256} {
		for _, p := range shuffled(overheadPeers) {
			if p.name == "failsafe" || p.name == "rebound-nokeys" {
				continue
			}
			b.Run("evict="+strconv.Itoa(kib)+"KiB/lib="+p.name, func(b *testing.B) {
				req := freshRequest(b, http.MethodGet, "http://api.test/v1/things")
				rt := p.wrap(newOKStub())
				buf := evictBuf[:kib<<10]
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					for i := 0; i < len(buf); i += 64 {
						buf[i]++
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
