package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quiet is a logger that drops everything, for tests that provoke warnings.
var quiet = slog.New(slog.DiscardHandler)

// created is a handler that counts its runs and answers 201 with the body
// it received, the way a "create" endpoint does.
type created struct{ runs atomic.Int64 }

func (c *created) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.runs.Add(1)
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Run", string(rune('0'+n)))
	w.WriteHeader(http.StatusCreated)
	w.Write(body)
}

// harness is a real loopback server running the middleware.
type harness struct {
	t     *testing.T
	srv   *httptest.Server
	cl    *http.Client
	store *idempotency.MemoryStore
	mu    sync.Mutex
	seen  []idempotency.Decision
}

func newHarness(t *testing.T, cfg idempotency.MiddlewareConfig, h http.Handler) *harness {
	t.Helper()
	hs := &harness{t: t, store: idempotency.NewMemoryStore(idempotency.MemoryConfig{})}
	cfg.OnDecision = func(_ *http.Request, d idempotency.Decision) {
		hs.mu.Lock()
		hs.seen = append(hs.seen, d)
		hs.mu.Unlock()
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	hs.srv = httptest.NewServer(idempotency.Middleware(hs.store, cfg)(h))
	tr := &http.Transport{}
	hs.cl = &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		hs.srv.Close()
	})
	return hs
}

func (hs *harness) decisions() []idempotency.Decision {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]idempotency.Decision(nil), hs.seen...)
}

// result is a response with its body read.
type result struct {
	status int
	header http.Header
	body   string
}

// problemType returns the "type" member of a problem+json body.
func (r result) problemType() string {
	var p struct{ Type string }
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Type
}

// do sends method path with body and headers given as name, value pairs.
func (hs *harness) do(method, path, body string, headers ...string) result {
	hs.t.Helper()
	req, err := http.NewRequest(method, hs.srv.URL+path, strings.NewReader(body))
	require.NoError(hs.t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := hs.cl.Do(req)
	require.NoError(hs.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(hs.t, err)
	return result{resp.StatusCode, resp.Header, string(b)}
}

func TestMiddlewareReplay(t *testing.T) {
	h := &created{}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)

	first := hs.do("POST", "/orders", "pizza", "Idempotency-Key", "k1")
	assert.Equal(t, 201, first.status)
	assert.Equal(t, "pizza", first.body, "the handler sees the whole body")
	assert.Empty(t, first.header.Get(idempotency.HeaderReplayed))

	for _, key := range []string{"k1", `"k1"`} { // a quoted key is the same key
		again := hs.do("POST", "/orders", "pizza", "Idempotency-Key", key)
		assert.Equal(t, 201, again.status)
		assert.Equal(t, "pizza", again.body)
		assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))
		assert.Equal(t, "1", again.header.Get("X-Run"), "the first run's headers")
		assert.Equal(t, "text/plain", again.header.Get("Content-Type"))
	}
	assert.EqualValues(t, 1, h.runs.Load(), "a repeat never reaches the handler")

	// The older header name is the same key.
	x := hs.do("POST", "/orders", "pizza", "X-Idempotency-Key", "k1")
	assert.Equal(t, "true", x.header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 1, h.runs.Load())

	assert.Equal(t, []idempotency.Decision{idempotency.DecisionExecuted, idempotency.DecisionReplayed,
		idempotency.DecisionReplayed, idempotency.DecisionReplayed}, hs.decisions())
}

func TestMiddlewareRefusals(t *testing.T) {
	tests := []struct {
		name     string
		cfg      idempotency.MiddlewareConfig
		method   string
		path     string
		body     string
		headers  []string
		status   int
		problem  string
		decision idempotency.Decision
	}{
		{name: "empty key", headers: []string{"Idempotency-Key", ""}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "empty quoted key", headers: []string{"Idempotency-Key", `""`}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "key too long", headers: []string{"Idempotency-Key", strings.Repeat("k", 256)}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "configured key limit", cfg: idempotency.MiddlewareConfig{MaxKeyLength: 4}, headers: []string{"Idempotency-Key", "12345"}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "malformed key", headers: []string{"Idempotency-Key", `"abc`}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "two keys", headers: []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "both names", headers: []string{"Idempotency-Key", "a", "X-Idempotency-Key", "a"}, status: 400, problem: idempotency.ProblemInvalidKey, decision: idempotency.DecisionInvalidKey},
		{name: "missing when required", cfg: idempotency.MiddlewareConfig{Required: true}, status: 400, problem: idempotency.ProblemMissingKey, decision: idempotency.DecisionInvalidKey},
		{name: "body too large", cfg: idempotency.MiddlewareConfig{MaxBodyBytes: 8}, body: "123456789", headers: []string{"Idempotency-Key", "k"}, status: 413, problem: idempotency.ProblemBodyTooLarge, decision: idempotency.DecisionBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &created{}
			hs := newHarness(t, tt.cfg, h)
			method := tt.method
			if method == "" {
				method = "POST"
			}
			got := hs.do(method, "/orders", tt.body, tt.headers...)
			assert.Equal(t, tt.status, got.status)
			assert.Equal(t, "application/problem+json", got.header.Get("Content-Type"))
			assert.Equal(t, tt.problem, got.problemType())
			assert.Zero(t, h.runs.Load(), "the handler is not called")
			assert.Equal(t, []idempotency.Decision{tt.decision}, hs.decisions())
		})
	}
}

func TestMiddlewareKeyReused(t *testing.T) {
	tests := []struct {
		name, method, path, body string
	}{
		{"different body", "POST", "/orders", "salad"},
		{"different path", "POST", "/refunds", "pizza"},
		{"different query", "POST", "/orders?express=1", "pizza"},
		{"different method", "PATCH", "/orders", "pizza"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &created{}
			hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
			require.Equal(t, 201, hs.do("POST", "/orders", "pizza", "Idempotency-Key", "k").status)
			got := hs.do(tt.method, tt.path, tt.body, "Idempotency-Key", "k")
			assert.Equal(t, 422, got.status)
			assert.Equal(t, idempotency.ProblemKeyReused, got.problemType())
			assert.EqualValues(t, 1, h.runs.Load())
		})
	}
}

func TestMiddlewarePassThrough(t *testing.T) {
	h := &created{}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	for range 2 {
		assert.Equal(t, 201, hs.do("POST", "/", "x").status, "no key: unprotected")
		got := hs.do("PUT", "/", "x", "Idempotency-Key", "k")
		assert.Empty(t, got.header.Get(idempotency.HeaderReplayed), "PUT keys are not honoured by default")
	}
	assert.EqualValues(t, 4, h.runs.Load())
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionPass, idempotency.DecisionPass}, hs.decisions(),
		"only keyed methods are reported")
}

func TestMiddlewareScope(t *testing.T) {
	h := &created{}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	alice := hs.do("POST", "/", "x", "Idempotency-Key", "k", "Authorization", "Bearer alice")
	bob := hs.do("POST", "/", "x", "Idempotency-Key", "k", "Authorization", "Bearer bob")
	anon := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	for _, r := range []result{alice, bob, anon} {
		assert.Equal(t, 201, r.status)
		assert.Empty(t, r.header.Get(idempotency.HeaderReplayed), "never another client's response")
	}
	assert.EqualValues(t, 3, h.runs.Load())
	again := hs.do("POST", "/", "x", "Idempotency-Key", "k", "Authorization", "Bearer alice")
	assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))
	assert.Equal(t, "1", again.header.Get("X-Run"), "alice's own response")

	// A custom scope replaces the default.
	h2 := &created{}
	hs2 := newHarness(t, idempotency.MiddlewareConfig{Scope: func(r *http.Request) string { return r.Header.Get("Tenant") }}, h2)
	hs2.do("POST", "/", "x", "Idempotency-Key", "k", "Tenant", "a", "Authorization", "one")
	same := hs2.do("POST", "/", "x", "Idempotency-Key", "k", "Tenant", "a", "Authorization", "two")
	other := hs2.do("POST", "/", "x", "Idempotency-Key", "k", "Tenant", "b")
	assert.Equal(t, "true", same.header.Get(idempotency.HeaderReplayed))
	assert.Empty(t, other.header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 2, h2.runs.Load())
}

func TestAuthorizationScope(t *testing.T) {
	req := func(auth ...string) *http.Request {
		r := httptest.NewRequest("POST", "/", nil)
		for _, a := range auth {
			r.Header.Add("Authorization", a)
		}
		return r
	}
	assert.Empty(t, idempotency.AuthorizationScope(req()))
	a := idempotency.AuthorizationScope(req("Bearer a"))
	assert.Len(t, a, 22)
	assert.NotContains(t, a, "Bearer", "the credential is not stored")
	assert.Equal(t, a, idempotency.AuthorizationScope(req("Bearer a")))
	assert.NotEqual(t, a, idempotency.AuthorizationScope(req("Bearer b")))
	assert.NotEqual(t, idempotency.AuthorizationScope(req("a", "b")), idempotency.AuthorizationScope(req("ab")))
	// Keys never contain a newline, so the key is what follows the last one.
	sk := idempotency.StoreKey("tenant\nwith newline", "k")
	assert.Equal(t, "k", sk[strings.LastIndexByte(sk, '\n')+1:])
}

// flaky answers fail for its first runs, then 201.
type flaky struct {
	created
	fail func(w http.ResponseWriter, run int64) bool
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.fail(w, f.runs.Load()+1) {
		f.runs.Add(1)
		return
	}
	f.created.ServeHTTP(w, r)
}

func TestMiddlewareReleasesOnFailure(t *testing.T) {
	tests := []struct {
		name    string
		cfg     idempotency.MiddlewareConfig
		status  int
		release bool
	}{
		{"500", idempotency.MiddlewareConfig{}, 500, true},
		{"503", idempotency.MiddlewareConfig{}, 503, true},
		{"429", idempotency.MiddlewareConfig{}, 429, true},
		{"400 is stored", idempotency.MiddlewareConfig{}, 400, false},
		{"409 from the handler is stored", idempotency.MiddlewareConfig{}, 409, false},
		{"custom release keeps 503", idempotency.MiddlewareConfig{Release: func(int) bool { return false }}, 503, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &flaky{fail: func(w http.ResponseWriter, run int64) bool {
				if run == 1 {
					w.WriteHeader(tt.status)
					return true
				}
				return false
			}}
			hs := newHarness(t, tt.cfg, h)
			first := hs.do("POST", "/", "x", "Idempotency-Key", "k")
			assert.Equal(t, tt.status, first.status)
			second := hs.do("POST", "/", "x", "Idempotency-Key", "k")
			if tt.release {
				assert.Equal(t, 201, second.status, "the retry runs the handler again")
				assert.EqualValues(t, 2, h.runs.Load())
				third := hs.do("POST", "/", "x", "Idempotency-Key", "k")
				assert.Equal(t, "true", third.header.Get(idempotency.HeaderReplayed))
				assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased, idempotency.DecisionExecuted,
					idempotency.DecisionReplayed}, hs.decisions())
			} else {
				assert.Equal(t, tt.status, second.status)
				assert.Equal(t, "true", second.header.Get(idempotency.HeaderReplayed))
				assert.EqualValues(t, 1, h.runs.Load())
			}
		})
	}
}

func TestMiddlewarePanicReleasesAndRepanics(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "release", true: "keep aborted"}[keep], func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			var runs atomic.Int64
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{KeepAborted: keep})(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					if runs.Add(1) == 1 {
						panic("boom")
					}
					w.WriteHeader(201)
				}))
			send := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
				r.Header.Set("Idempotency-Key", "k")
				h.ServeHTTP(w, r)
				return w
			}
			assert.PanicsWithValue(t, "boom", func() { send() }, "the panic continues")
			second := send()
			if keep {
				assert.Equal(t, 410, second.Code)
				assert.EqualValues(t, 1, runs.Load())
				return
			}
			assert.Equal(t, 201, second.Code, "the key was released")
			assert.EqualValues(t, 2, runs.Load())
		})
	}
}

func TestMiddlewarePanicThroughServer(t *testing.T) {
	// http.ErrAbortHandler is how a handler aborts a response; the server
	// recovers it silently and closes the connection.
	h := &flaky{fail: func(http.ResponseWriter, int64) bool { panic(http.ErrAbortHandler) }}
	hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
	req, _ := http.NewRequest("POST", hs.srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	_, err := hs.cl.Do(req)
	require.Error(t, err)
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionReleased}, hs.decisions())
	_, found, _ := hs.store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
	assert.False(t, found)
}

func TestMiddlewareClientGone(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		keep    bool
		stored  bool
	}{
		{"handler gives up: released", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false, false},
		{"handler gives up, keep aborted", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true, true},
		{"handler finished anyway: stored", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			w.WriteHeader(201)
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			h := idempotency.Middleware(store, idempotency.MiddlewareConfig{KeepAborted: tt.keep})(tt.handler)
			rctx, cancel := context.WithCancel(context.Background())
			cancel() // the client is gone
			r := httptest.NewRequestWithContext(rctx, "POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(httptest.NewRecorder(), r)
			_, found, _ := store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
			assert.Equal(t, tt.stored, found)
		})
	}
}

func TestMiddlewareInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(entered)
		<-release
		w.WriteHeader(201)
	}))
	done := make(chan result)
	go func() { done <- hs.do("POST", "/", "x", "Idempotency-Key", "k") }()
	<-entered
	got := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 409, got.status)
	assert.Equal(t, "1", got.header.Get("Retry-After"))
	assert.Equal(t, idempotency.ProblemInFlight, got.problemType())

	// A different body while in flight is a reuse, not a conflict.
	assert.Equal(t, 422, hs.do("POST", "/", "y", "Idempotency-Key", "k").status)
	close(release)
	assert.Equal(t, 201, (<-done).status)
	assert.Equal(t, "true", hs.do("POST", "/", "x", "Idempotency-Key", "k").header.Get(idempotency.HeaderReplayed))
	assert.EqualValues(t, 1, runs.Load())
}

func TestMiddlewareConcurrentSameKey(t *testing.T) {
	const callers = 50
	tests := []struct {
		name string
		slow bool // the handler holds until every other caller has its answer
	}{
		{"fast handler", false},
		{"handler outlasts the others", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs, answered atomic.Int64
			others := make(chan struct{})
			hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				body, _ := io.ReadAll(r.Body)
				if tt.slow {
					select {
					case <-others:
					case <-r.Context().Done():
					}
				}
				w.WriteHeader(201)
				w.Write(body)
			}))
			start := make(chan struct{})
			results := make(chan result, callers)
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					<-start
					r := hs.do("POST", "/", "same", "Idempotency-Key", "k")
					results <- r
					if r.status != 201 || r.header.Get(idempotency.HeaderReplayed) != "" {
						if answered.Add(1) == callers-1 {
							close(others)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			close(results)
			fresh, replayed, conflicts := 0, 0, 0
			for r := range results {
				switch {
				case r.status == 201 && r.header.Get(idempotency.HeaderReplayed) == "":
					fresh++
					assert.Equal(t, "same", r.body)
				case r.status == 201:
					replayed++
					assert.Equal(t, "same", r.body)
				case r.status == 409:
					conflicts++
				default:
					t.Errorf("unexpected answer %d %s", r.status, r.body)
				}
			}
			assert.EqualValues(t, 1, runs.Load(), "exactly one execution")
			assert.Equal(t, 1, fresh)
			assert.Equal(t, callers-1, replayed+conflicts)
			if tt.slow {
				assert.Equal(t, callers-1, conflicts, "nothing to replay while the handler runs")
			}
			t.Logf("1 executed, %d replayed, %d conflicts", replayed, conflicts)
		})
	}
}

func TestMiddlewareOversizedResponse(t *testing.T) {
	big := strings.Repeat("z", 100)
	var runs atomic.Int64
	hs := newHarness(t, idempotency.MiddlewareConfig{MaxResponseBytes: 64}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.WriteHeader(201)
		for i := 0; i < len(big); i += 10 {
			w.Write([]byte(big[i : i+10]))
		}
	}))
	first := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 201, first.status)
	assert.Equal(t, big, first.body, "the first response is sent whole")
	again := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 410, again.status)
	assert.Equal(t, idempotency.ProblemNotReplayable, again.problemType())
	assert.EqualValues(t, 1, runs.Load(), "never run twice")
	small := hs.do("POST", "/", "x", "Idempotency-Key", "k2")
	assert.Equal(t, 201, small.status, "a different key is unaffected")
}

func TestMiddlewareHijackNotReplayable(t *testing.T) {
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		buf.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
		conn.Close()
	}))
	assert.Equal(t, 201, hs.do("POST", "/", "x", "Idempotency-Key", "k").status)
	assert.Equal(t, 410, hs.do("POST", "/", "x", "Idempotency-Key", "k").status)
}

func TestMiddlewareReplayedHeaders(t *testing.T) {
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/orders/1")
		w.Header().Set("Connection", "close")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(201)
		w.Header().Set("X-Late", "not sent") // after WriteHeader: not part of the response
	}))
	hs.do("POST", "/", "x", "Idempotency-Key", "k")
	got := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 201, got.status)
	assert.Equal(t, "/orders/1", got.header.Get("Location"))
	assert.Equal(t, []string{"a=1", "b=2"}, got.header.Values("Set-Cookie"))
	assert.Empty(t, got.header.Get("X-Late"))
	rec, found, _ := hs.store.Lookup(context.Background(), idempotency.StoreKey("", "k"))
	require.True(t, found)
	assert.NotContains(t, rec.Response.Header, "Connection", "hop-by-hop headers are not stored")
}

// failingStore fails every operation.
type failingStore struct{}

var errDown = errors.New("store down")

func (failingStore) Reserve(context.Context, string, idempotency.Fingerprint, time.Duration) (idempotency.Record, bool, error) {
	return idempotency.Record{}, false, errDown
}
func (failingStore) Complete(context.Context, string, uint64, *idempotency.Response, time.Duration) error {
	return errDown
}
func (failingStore) Release(context.Context, string, uint64) error { return errDown }
func (failingStore) Lookup(context.Context, string) (idempotency.Record, bool, error) {
	return idempotency.Record{}, false, errDown
}

func TestMiddlewareStoreFailure(t *testing.T) {
	h := &created{}
	srv := httptest.NewServer(idempotency.Middleware(failingStore{}, idempotency.MiddlewareConfig{Logger: quiet, RetryAfter: 1500 * time.Millisecond})(h))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode, "fail closed: nothing runs without a reservation")
	assert.Equal(t, "2", resp.Header.Get("Retry-After"), "rounded up to whole seconds")
	assert.Zero(t, h.runs.Load())
}

func TestMiddlewareNilArguments(t *testing.T) {
	h := idempotency.Middleware(nil, idempotency.MiddlewareConfig{})(nil)
	for range 2 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
		r.Header.Set("Idempotency-Key", "k")
		h.ServeHTTP(w, r)
		assert.Equal(t, 404, w.Code, "a nil handler is NotFound; its 404 is stored and replayed")
	}
}

func TestMiddlewareLeaseExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			runs      atomic.Int64
			mu        sync.Mutex
			decisions []idempotency.Decision
		)
		wedged := make(chan struct{})
		h := idempotency.Middleware(idempotency.NewMemoryStore(idempotency.MemoryConfig{}), idempotency.MiddlewareConfig{
			Lease:  30 * time.Second,
			Logger: quiet,
			OnDecision: func(_ *http.Request, d idempotency.Decision) {
				mu.Lock()
				decisions = append(decisions, d)
				mu.Unlock()
			},
		})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if runs.Add(1) == 1 {
				<-wedged // a handler that never finishes, as in a crashed process
			}
			w.WriteHeader(201)
		}))
		send := func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			h.ServeHTTP(w, r)
			return w
		}

		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- send() }()
		synctest.Wait() // the first request is wedged in the handler

		assert.Equal(t, 409, send().Code)
		time.Sleep(30*time.Second - time.Nanosecond)
		assert.Equal(t, 409, send().Code, "still leased just before the lease ends")
		time.Sleep(time.Nanosecond)
		second := send()
		assert.Equal(t, 201, second.Code, "the lease expired: the key is free again")
		assert.Empty(t, second.Header().Get(idempotency.HeaderReplayed))
		assert.EqualValues(t, 2, runs.Load())

		close(wedged)
		assert.Equal(t, 201, (<-done).Code, "the late handler's response still goes out")
		assert.Equal(t, "true", send().Header().Get(idempotency.HeaderReplayed), "the second run's response is kept")

		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []idempotency.Decision{
			idempotency.DecisionInFlight, idempotency.DecisionInFlight, idempotency.DecisionExecuted,
			idempotency.DecisionLeaseLost, idempotency.DecisionReplayed,
		}, decisions)
	})
}
