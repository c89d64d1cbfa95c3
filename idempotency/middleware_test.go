package idempotency_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
	store idempotency.Store
	mu    sync.Mutex
	seen  []idempotency.Decision
	// decided receives a value after each decision is recorded.
	decided chan struct{}
}

func newHarness(t *testing.T, cfg idempotency.MiddlewareConfig, h http.Handler) *harness {
	t.Helper()
	return newHarnessOn(t, idempotency.NewMemoryStore(idempotency.MemoryConfig{}), cfg, h)
}

// newHarnessOn is newHarness with a store of the test's own.
func newHarnessOn(t *testing.T, store idempotency.Store, cfg idempotency.MiddlewareConfig, h http.Handler) *harness {
	t.Helper()
	hs := &harness{t: t, store: store}
	hs.decided = make(chan struct{}, 1024)
	cfg.OnDecision = func(_ *http.Request, d idempotency.Decision) {
		hs.mu.Lock()
		hs.seen = append(hs.seen, d)
		hs.mu.Unlock()
		select {
		case hs.decided <- struct{}{}:
		default:
		}
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

// storeKey returns the key the middleware stores key under for an
// anonymous request from hs.cl.
func (hs *harness) storeKey(key string) string {
	r := httptest.NewRequest("POST", hs.srv.URL, nil)
	return idempotency.StoreKey(idempotency.CallerScope(r, nil), key)
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
	// The same bytes as another media type or encoding are another request.
	headerTests := []struct {
		name    string
		first   []string
		second  []string
		replays bool
	}{
		{"form, then JSON", []string{"Content-Type", "application/x-www-form-urlencoded"}, []string{"Content-Type", "application/json"}, false},
		{"no type, then a type", nil, []string{"Content-Type", "application/json"}, false},
		{"plain, then gzip", nil, []string{"Content-Encoding", "gzip"}, false},
		{"gzip, then br", []string{"Content-Encoding", "gzip"}, []string{"Content-Encoding", "br"}, false},
		{"same type: a replay", []string{"Content-Type", "application/json"}, []string{"Content-Type", "application/json"}, true},
	}
	for _, tt := range headerTests {
		t.Run(tt.name, func(t *testing.T) {
			h := &created{}
			hs := newHarness(t, idempotency.MiddlewareConfig{}, h)
			require.Equal(t, 201, hs.do("POST", "/orders", "a=1", append([]string{"Idempotency-Key", "k"}, tt.first...)...).status)
			got := hs.do("POST", "/orders", "a=1", append([]string{"Idempotency-Key", "k"}, tt.second...)...)
			if tt.replays {
				assert.Equal(t, "true", got.header.Get(idempotency.HeaderReplayed))
				return
			}
			assert.Equal(t, 422, got.status)
			assert.Equal(t, idempotency.ProblemKeyReused, got.problemType())
			assert.EqualValues(t, 1, h.runs.Load())
		})
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

func TestCallerScope(t *testing.T) {
	req := func(host string, headers ...string) *http.Request {
		r := httptest.NewRequest("POST", "/", nil)
		r.Host = host
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		return r
	}
	scope := func(r *http.Request) string { return idempotency.CallerScope(r, nil) }
	a := scope(req("api.test", "Authorization", "Bearer a"))
	assert.Len(t, a, 22)
	assert.NotContains(t, a, "Bearer", "the credential is not stored")
	assert.Equal(t, a, scope(req("api.test", "Authorization", "Bearer a")))
	assert.Equal(t, a, scope(req("API.test", "Authorization", "Bearer a")), "host names are case-insensitive")

	// Every credential, and the host, separates callers.
	distinct := map[string]string{}
	for name, r := range map[string]*http.Request{
		"anonymous":           req("api.test"),
		"other host":          req("other.test"),
		"authorization":       req("api.test", "Authorization", "Bearer a"),
		"authorization b":     req("api.test", "Authorization", "Bearer b"),
		"two values":          req("api.test", "Authorization", "a", "Authorization", "b"),
		"joined values":       req("api.test", "Authorization", "ab"),
		"proxy authorization": req("api.test", "Proxy-Authorization", "Bearer a"),
		"cookie":              req("api.test", "Cookie", "session=a"),
		"cookie b":            req("api.test", "Cookie", "session=b"),
		"api key":             req("api.test", "X-API-Key", "a"),
		"api key b":           req("api.test", "X-API-Key", "b"),
		"api-key header":      req("api.test", "Api-Key", "a"),
		"auth token":          req("api.test", "X-Auth-Token", "a"),
	} {
		sc := scope(r)
		if other, dup := distinct[sc]; dup {
			t.Errorf("%s and %s share a scope", name, other)
		}
		distinct[sc] = name
	}

	// The API-key list is configurable: a header not on it is not a credential.
	custom := []string{"x-tenant-key"}
	assert.NotEqual(t, idempotency.CallerScope(req("h", "X-Tenant-Key", "a"), custom), idempotency.CallerScope(req("h", "X-Tenant-Key", "b"), custom))
	assert.Equal(t, idempotency.CallerScope(req("h", "X-Api-Key", "a"), custom), idempotency.CallerScope(req("h", "X-Api-Key", "b"), custom))
	assert.Equal(t, idempotency.CallerScope(req("h", "X-Api-Key", "a"), []string{}), idempotency.CallerScope(req("h"), []string{}))

	// Keys never contain a newline, so the key is what follows the last one.
	sk := idempotency.StoreKey("tenant\nwith newline", "k")
	assert.Equal(t, "k", sk[strings.LastIndexByte(sk, '\n')+1:])
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

// TestMiddlewareHijackOutcomeUnknown: what a handler sends on a hijacked
// connection is not recorded, so the key is completed as OutcomeUnknown:
// a repeat gets the 500 problem, not a second run.
func TestMiddlewareHijackOutcomeUnknown(t *testing.T) {
	var runs atomic.Int64
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		buf.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
		conn.Close()
	}))
	assert.Equal(t, 201, hs.do("POST", "/", "x", "Idempotency-Key", "k").status)
	<-hs.decided // the handler's own answer can reach the client before the middleware stores the outcome
	again := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 500, again.status)
	assert.Equal(t, idempotency.ProblemOutcomeUnknown, again.problemType())
	assert.EqualValues(t, 1, runs.Load())
	assert.Equal(t, []idempotency.Decision{idempotency.DecisionAborted, idempotency.DecisionOutcomeUnknown}, hs.decisions())
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
	rec, found, _ := hs.store.Lookup(context.Background(), hs.storeKey("k"))
	require.True(t, found)
	assert.NotContains(t, rec.Response.Header, "Connection", "hop-by-hop headers are not stored")
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

func TestMiddlewareStreamingResponse(t *testing.T) {
	hs := newHarness(t, idempotency.MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusEarlyHints) // informational: passed on, not recorded
		for _, part := range []string{"one ", "two ", "three"} {
			w.Write([]byte(part))
			assert.NoError(t, rc.Flush(), "flushing works through the recorder")
		}
		assert.NoError(t, rc.SetWriteDeadline(time.Now().Add(time.Minute)), "other controls reach the real writer")
	}))
	first := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 200, first.status)
	assert.Equal(t, "one two three", first.body)
	again := hs.do("POST", "/", "x", "Idempotency-Key", "k")
	assert.Equal(t, 200, again.status, "the final status, not the 103")
	assert.Equal(t, "one two three", again.body)
	assert.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))
}

func TestMiddlewareChunkedBody(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"within the limit", "12345678", 201},
		{"over the limit", "123456789", 413},
		{"empty", "", 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &created{}
			hs := newHarness(t, idempotency.MiddlewareConfig{MaxBodyBytes: 8}, h)
			// A reader of unknown length makes the client send it chunked.
			req, _ := http.NewRequest("POST", hs.srv.URL, io.MultiReader(strings.NewReader(tt.body)))
			req.Header.Set("Idempotency-Key", "k")
			resp, err := hs.cl.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode)
			if tt.status == 201 {
				assert.Equal(t, tt.body, string(body), "the handler got the whole body")
			}
		})
	}
}

func TestMiddlewareCustomMethods(t *testing.T) {
	h := &created{}
	hs := newHarness(t, idempotency.MiddlewareConfig{Methods: []string{"PUT"}}, h)
	for range 2 {
		hs.do("PUT", "/", "x", "Idempotency-Key", "k")
		hs.do("POST", "/", "x", "Idempotency-Key", "k")
	}
	assert.EqualValues(t, 3, h.runs.Load(), "PUT once, POST (not keyed here) twice")
}

func TestDecisionString(t *testing.T) {
	tests := []struct {
		d    idempotency.Decision
		want string
	}{
		{idempotency.DecisionPass, "pass"},
		{idempotency.DecisionExecuted, "executed"},
		{idempotency.DecisionReleased, "released"},
		{idempotency.DecisionReplayed, "replayed"},
		{idempotency.DecisionInFlight, "in flight"},
		{idempotency.DecisionKeyReused, "key reused"},
		{idempotency.DecisionNotReplayable, "not replayable"},
		{idempotency.DecisionInvalidKey, "invalid key"},
		{idempotency.DecisionBodyTooLarge, "body too large"},
		{idempotency.DecisionStoreError, "store error"},
		{idempotency.DecisionLeaseLost, "lease lost"},
		{idempotency.Decision(200), "decision(200)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) { assert.Equal(t, tt.want, tt.d.String()) })
	}
}
