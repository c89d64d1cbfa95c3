package rebound_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests follow one POST at a time through the default chain to a
// server whose answer is lost after its handler ran: a reset after the
// request was written, the ambiguous failure that no client can tell from
// a request that never arrived. Whether the chain may send the POST again
// depends only on who vouches for its key.

// e2eConnKey is the context key under which dropServer finds the
// connection a request arrived on.
type e2eConnKey struct{}

// dropServer counts the executions of its handler. A GET is answered (so
// a test can leave a keep-alive connection in the pool). A POST is handed
// to the handler and then, when drop says so, its connection is dropped
// without an answer: hijacked and closed over HTTP/1.1, the TLS connection
// closed under net/http's HTTP/2 server. The handler's response is written
// to a recorder then, so the effect happens and only the answer is lost.
type dropServer struct {
	srv      *httptest.Server
	runs     atomic.Int64 // executions of the handler
	attempts atomic.Int64 // POSTs that arrived
	drops    atomic.Int64 // POSTs whose connection was dropped
}

// newDropServer starts a dropServer in front of h. drop, given the
// request's 1-based arrival number, says whether to drop its answer; nil
// drops every one.
func newDropServer(t *testing.T, http2 bool, h http.Handler, drop func(n int64) bool) *dropServer {
	t.Helper()
	s := &dropServer{}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.runs.Add(1)
		h.ServeHTTP(w, r)
	})
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, "warm")
			return
		}
		n := s.attempts.Add(1)
		if drop != nil && !drop(n) {
			counted.ServeHTTP(w, r)
			return
		}
		counted.ServeHTTP(httptest.NewRecorder(), r)
		s.drops.Add(1)
		if r.ProtoMajor == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			conn.Close()
			return
		}
		r.Context().Value(e2eConnKey{}).(net.Conn).Close()
	}))
	s.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, e2eConnKey{}, c)
	}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if http2 {
		s.srv.EnableHTTP2 = true
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// chain returns the default chain over a fresh transport to the server
// (HTTP/2 over TLS for an HTTP/2 server), with a keep-alive connection
// already in its pool when reused is set.
func (s *dropServer) chain(t *testing.T, reused bool, opts ...rebound.Option) http.RoundTripper {
	t.Helper()
	base := s.srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	rt := rebound.NewTransport(base, opts...)
	if reused {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL, nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return rt
}

// post sends one POST with ctx through rt and returns the response's
// status and body, or the error.
func post(t *testing.T, rt http.RoundTripper, ctx context.Context, url string, header http.Header) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/orders", strings.NewReader(`{"sku":42}`))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), nil
}

// created answers 201, the effect of a "create order" endpoint, and counts
// its executions in runs.
func created(runs *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		runs.Add(1)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "order 42")
	})
}

// connections lists the four ways a POST reaches a server.
var connections = []struct {
	name   string
	http2  bool
	reused bool
}{
	{"HTTP/1.1/fresh", false, false},
	{"HTTP/1.1/reused", false, true},
	{"HTTP/2/fresh", true, false},
	{"HTTP/2/reused", true, true},
}

// TestChainRunsAPostOnceTowardAnUndeclaredHost is the do-no-harm rule: a
// plain handler that does not deduplicate, behind a connection that drops
// every answer. The chain generates a key, but nothing says the server
// honours it, so neither the retry loop nor net/http underneath repeats
// the POST: one execution per call, and the caller sees the failure.
func TestChainRunsAPostOnceTowardAnUndeclaredHost(t *testing.T) {
	for _, c := range connections {
		t.Run(c.name, func(t *testing.T) {
			var effects atomic.Int64
			s := newDropServer(t, c.http2, created(&effects), nil)
			rt := s.chain(t, c.reused, rebound.WithRetry(fastRetry))
			for i := range 3 {
				_, _, err := post(t, rt, context.Background(), s.srv.URL, nil)
				require.Error(t, err, "the answer was lost")
				assert.EqualValues(t, i+1, s.runs.Load(), "one execution per call (call %d): %v", i+1, err)
			}
		})
	}

	t.Run("503", func(t *testing.T) {
		// A 5xx after the handler ran is as ambiguous: not retried either.
		var runs atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer srv.Close()
		code, _, err := post(t, newTransport(t, rebound.WithRetry(fastRetry)), context.Background(), srv.URL, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, code, "the caller sees the real 503")
		assert.EqualValues(t, 1, runs.Load())
	})

	t.Run("429", func(t *testing.T) {
		// A 429 says the server did not process the request: retried.
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusCreated)
		}))
		defer srv.Close()
		code, _, err := post(t, newTransport(t, rebound.WithRetry(fastRetry)), context.Background(), srv.URL, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusCreated, code)
		assert.EqualValues(t, 2, hits.Load())
	})
}

// dedup is a server that honours keys: idempotency.Middleware over the
// created handler, whose executions it counts in effects.
func dedup(effects *atomic.Int64) http.Handler {
	return idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{})(created(effects))
}

// TestChainRetriesAPostTowardAHostThatHonoursKeys declares the test host
// as one that deduplicates (Policy.KeysHonored, and its JSON form): the
// first answer is lost, the chain and net/http may repeat the POST with
// its generated key, the middleware answers the repeat from its record,
// and the caller gets its 201 with the effect run once.
func TestChainRetriesAPostTowardAHostThatHonoursKeys(t *testing.T) {
	file, err := rebound.ParsePolicyFile([]byte(`{"hosts": {"127.0.0.1":
		{"keys_honored": true, "base_delay": "1ns", "max_delay": "1ns"}}}`))
	require.NoError(t, err)
	policies := []struct {
		name string
		opts []rebound.Option
	}{
		{"Policy", []rebound.Option{rebound.WithHostPolicy("127.0.0.1", rebound.Policy{Retry: fastRetry, KeysHonored: true})}},
		{"policy file", file},
	}
	for _, p := range policies {
		for _, c := range connections {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				var effects atomic.Int64
				s := newDropServer(t, c.http2, dedup(&effects), func(n int64) bool { return n == 1 })
				rt := s.chain(t, c.reused, p.opts...)
				code, body, err := post(t, rt, context.Background(), s.srv.URL, nil)
				require.NoError(t, err)
				assert.Equal(t, http.StatusCreated, code)
				assert.Equal(t, "order 42", body)
				assert.EqualValues(t, 1, s.drops.Load())
				assert.EqualValues(t, 2, s.attempts.Load(), "retried once")
				assert.EqualValues(t, 1, effects.Load(), "the effect ran once; the repeat was answered from the record")
			})
		}
	}
}

// TestChainRetriesAPostWithTheCallersKey: a key the caller set (the header,
// or idempotency.WithKey) licenses a repeat of the POST after an ambiguous
// failure only toward a host declared KeysHonored, or one whose policy
// trusts caller keys (TrustCallerKeys); by default it goes out, under the
// lower-case name, and licenses nothing, so a server that ignores keys
// never runs the POST twice.
func TestChainRetriesAPostWithTheCallersKey(t *testing.T) {
	keys := []struct {
		name   string
		ctx    context.Context
		header http.Header
	}{
		{"header", context.Background(), http.Header{"Idempotency-Key": {"order-42"}}},
		{"WithKey", idempotency.WithKey(context.Background(), "order-42"), nil},
	}
	policies := []struct {
		name    string
		policy  rebound.Policy
		retried bool
	}{
		{"default", rebound.Policy{Retry: fastRetry}, false},
		{"TrustCallerKeys", rebound.Policy{Retry: fastRetry, TrustCallerKeys: true}, true},
		{"KeysHonored", rebound.Policy{Retry: fastRetry, KeysHonored: true}, true},
	}
	for _, k := range keys {
		for _, pol := range policies {
			for _, c := range connections {
				t.Run(k.name+"/"+pol.name+"/"+c.name, func(t *testing.T) {
					var mu sync.Mutex
					var seen []string
					var effects atomic.Int64
					h := dedup(&effects)
					s := newDropServer(t, c.http2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						mu.Lock()
						seen = append(seen, r.Header.Get("Idempotency-Key"))
						mu.Unlock()
						h.ServeHTTP(w, r)
					}), func(n int64) bool { return n == 1 })
					rt := s.chain(t, c.reused, rebound.WithPolicy(pol.policy))
					code, _, err := post(t, rt, k.ctx, s.srv.URL, k.header)
					assert.EqualValues(t, 1, effects.Load())
					if !pol.retried {
						require.Error(t, err, "not repeated: the host is not declared to honour keys")
						assert.EqualValues(t, 1, s.attempts.Load(), "sent once")
						assert.Equal(t, []string{"order-42"}, seen, "the caller's key still went out")
						return
					}
					require.NoError(t, err)
					assert.Equal(t, http.StatusCreated, code)
					assert.EqualValues(t, 2, s.attempts.Load(), "retried once")
					assert.Equal(t, []string{"order-42", "order-42"}, seen, "both attempts carried the caller's key")
				})
			}
		}
	}
}

// TestCallerKeyTowardAServerThatIgnoresKeys is the reproduction: a
// client that sets Idempotency-Key by habit, toward a server that ignores
// it and whose answer is lost after it ran the charge. By default the
// charge runs once (the caller gets the error); a policy that trusts the
// caller's key repeats the POST, and the server charges twice.
func TestCallerKeyTowardAServerThatIgnoresKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  rebound.Policy
		charges int64
	}{
		{"default", rebound.Policy{Retry: fastRetry}, 1},
		{"TrustCallerKeys", rebound.Policy{Retry: fastRetry, TrustCallerKeys: true}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var charges atomic.Int64
			s := newDropServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				charges.Add(1) // ignores the key
				w.WriteHeader(http.StatusCreated)
			}), func(n int64) bool { return n == 1 })
			rt := s.chain(t, false, rebound.WithPolicy(tc.policy))
			_, _, err := post(t, rt, context.Background(), s.srv.URL, http.Header{"Idempotency-Key": {"charge-7"}})
			assert.Equal(t, tc.charges, charges.Load())
			if tc.charges == 1 {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}
