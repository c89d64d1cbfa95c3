package idempotency_test

import (
	"bytes"
	"maps"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rebound-http/rebound/idempotency"
)

// BenchmarkTransport measures the client link on the success path, against
// a RoundTripper that answers at once: "bare" is that RoundTripper alone,
// so the link's cost is the difference.
func BenchmarkTransport(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	next := nopRT{resp}
	opaque = next
	post, _ := http.NewRequest("POST", "http://example.test/orders", nil)
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set("Authorization", "Bearer token")
	post.Header.Set("User-Agent", "bench")
	keyed := post.Clone(post.Context())
	keyed.Header.Set(idempotency.HeaderKey, "caller-key")
	get, _ := http.NewRequest("GET", "http://example.test/orders", nil)

	cases := []struct {
		name string
		rt   http.RoundTripper
		req  *http.Request
	}{
		{"bare/POST", next, post},
		{"inject/POST/v4", idempotency.NewTransport(next, idempotency.Config{}), post},
		{"inject/POST/v7", idempotency.NewTransport(next, idempotency.Config{NewKey: idempotency.NewKeyV7}), post},
		{"inject/POST/caller-key", idempotency.NewTransport(next, idempotency.Config{}), keyed},
		{"inject/GET", idempotency.NewTransport(next, idempotency.Config{}), get},
		// The floor: only the copies the link must make (the request, the
		// header map, one entry added) with a constant key, no checks and
		// no key generation. What the link costs above this is its own.
		{"floor/POST", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c := new(http.Request)
			*c = *r
			c.Header = maps.Clone(r.Header)
			c.Header[idempotency.HeaderKey] = constKey
			return opaque.RoundTrip(c) // an interface call: c escapes, as in the link
		}), post},
		// For comparison: the obvious way, a deep Request.Clone and
		// google/uuid's default (unpooled) generator.
		{"naive/POST", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set(idempotency.HeaderKey, uuid.NewString())
			return next.RoundTrip(r)
		}), post},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.rt.RoundTrip(c.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// constKey is the floor case's header value, and opaque its RoundTripper,
// a package variable so that the compiler cannot see through the call
// and keep the request copy on the stack.
var (
	constKey = []string{"00000000-0000-4000-8000-000000000000"}
	opaque   http.RoundTripper
)

func BenchmarkNewKey(b *testing.B) {
	b.Run("v4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = idempotency.NewKeyV4()
		}
	})
	b.Run("v7", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = idempotency.NewKeyV7()
		}
	})
	b.Run("v4/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = idempotency.NewKeyV4()
			}
		})
	})
}

// discardWriter is a ResponseWriter that keeps nothing, reused across
// iterations so the benchmark measures the middleware, not the harness.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// rewindBody is a request body that can be rewound without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkMiddleware measures the middleware on a first request (a new
// key every iteration: reserve, run, record, complete) and on a replay,
// against the handler alone ("bare"). Every case formats a key per
// iteration, so the harness cost is the same in each. The first-request
// case keeps responses for a millisecond only, so its store stays at a
// few hundred keys, each new one matched by one expiring (a steady state)
// and never full. Besides wall time it reports the process's CPU time per
// operation (cpu-ns/op, where the system can tell), which other load on a
// shared machine disturbs far less.
func BenchmarkMiddleware(b *testing.B) {
	payload := []byte(`{"item":"pizza","qty":2}`)
	response := []byte(`{"id":"ord_1","status":"created"}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [64]byte
		r.Body.Read(buf[:])
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(response)
	})
	cases := []struct {
		name    string
		h       http.Handler
		sameKey bool
	}{
		{"bare", handler, false},
		{"first", idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{TTL: time.Millisecond})(handler), false},
		{"replay", idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{})(handler), true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := &rewindBody{}
			req, _ := http.NewRequest("POST", "http://example.test/orders", body)
			req.ContentLength = int64(len(payload))
			req.Header.Set("Authorization", "Bearer token")
			req.Header.Set("Content-Type", "application/json")
			keyVal := []string{""}
			req.Header[idempotency.HeaderKey] = keyVal
			w := &discardWriter{h: make(http.Header)}
			var kb []byte
			i := 0
			b.ReportAllocs()
			cpu0, cpuOK := cpuTime()
			for b.Loop() {
				if !c.sameKey {
					i++
				}
				kb = strconv.AppendInt(append(kb[:0], 'k'), int64(i), 10)
				keyVal[0] = string(kb)
				body.Reset(payload)
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
			if cpu1, ok := cpuTime(); ok && cpuOK {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}

// BenchmarkMemoryStore measures the store's operations from parallel
// goroutines: a full first-request cycle (Reserve, Complete) on new keys,
// and a Reserve that finds a completed key (the replay path).
func BenchmarkMemoryStore(b *testing.B) {
	resp := &idempotency.Response{Status: 201, Body: []byte("ok")}
	b.Run("reserve+complete", func(b *testing.B) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := "k" + strconv.FormatInt(n.Add(1), 10)
				rec, _, err := s.Reserve(ctx, k, fp(1), time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Complete(ctx, k, rec.Token, resp, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("reserve-existing", func(b *testing.B) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = "k" + strconv.Itoa(i)
			rec, _, _ := s.Reserve(ctx, keys[i], fp(1), time.Minute)
			_ = s.Complete(ctx, keys[i], rec.Token, resp, time.Hour)
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 97
			for pb.Next() {
				i++
				if _, reserved, _ := s.Reserve(ctx, keys[i&1023], fp(1), time.Minute); reserved {
					b.Fatal("completed key reserved")
				}
			}
		})
	})
	b.Run("lookup", func(b *testing.B) {
		s := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		rec, _, _ := s.Reserve(ctx, "k", fp(1), time.Minute)
		_ = s.Complete(ctx, "k", rec.Token, resp, time.Hour)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Lookup(ctx, "k")
			}
		})
	})
}
