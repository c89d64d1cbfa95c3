package idempotency_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/rebound-http/rebound/classify"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stub is a RoundTripper that records the requests it is given and answers
// 200 without I/O.
type stub struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *stub) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func (s *stub) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

// nopRT answers 200 with a shared response, for allocation counts.
type nopRT struct{ resp *http.Response }

func (n nopRT) RoundTrip(*http.Request) (*http.Response, error) { return n.resp, nil }

func TestTransportAddsKey(t *testing.T) {
	tests := []struct {
		name    string
		cfg     idempotency.Config
		method  string
		header  http.Header
		ctxKey  string
		wantKey string // "" no key added, "new" a fresh UUIDv4, "new7" a UUIDv7, else this value
		name2   string // header map key the key is under; "" means idempotency-key (licensing nothing)
	}{
		{name: "POST gets a key", method: "POST", wantKey: "new"},
		{name: "PATCH gets a key", method: "PATCH", wantKey: "new"},
		{name: "honoured host: canonical", cfg: idempotency.Config{KeysHonored: true}, method: "POST", wantKey: "new", name2: "Idempotency-Key"},
		{name: "GET does not", method: "GET"},
		{name: "PUT does not", method: "PUT"},
		{name: "DELETE does not", method: "DELETE"},
		{name: "caller key kept", method: "POST", header: http.Header{"Idempotency-Key": {"mine"}}},
		{name: "caller X key kept", method: "POST", header: http.Header{"X-Idempotency-Key": {"mine"}}},
		{name: "empty caller key kept", method: "POST", header: http.Header{"Idempotency-Key": {""}}},
		{name: "lower-case key kept", method: "POST", header: http.Header{"idempotency-key": {"mine"}}},
		{name: "lower-case X key kept", method: "POST", header: http.Header{"x-idempotency-key": {"mine"}}},
		{name: "context key", method: "POST", ctxKey: "job-42", wantKey: "job-42", name2: "Idempotency-Key"},
		{name: "context key loses to header", method: "POST", ctxKey: "job-42", header: http.Header{"Idempotency-Key": {"mine"}}},
		{name: "context key ignored on GET", method: "GET", ctxKey: "job-42"},
		{name: "disabled", cfg: idempotency.Config{Disable: true}, method: "POST"},
		{name: "disabled honours context key", cfg: idempotency.Config{Disable: true}, method: "POST", ctxKey: "job-42", wantKey: "job-42", name2: "Idempotency-Key"},
		{name: "skipped", cfg: idempotency.Config{Skip: func(*http.Request) bool { return true }}, method: "POST"},
		{name: "skip false", cfg: idempotency.Config{Skip: func(*http.Request) bool { return false }}, method: "POST", wantKey: "new"},
		{name: "skipped honours context key", cfg: idempotency.Config{Skip: func(*http.Request) bool { return true }}, method: "POST", ctxKey: "k", wantKey: "k", name2: "Idempotency-Key"},
		{name: "custom methods", cfg: idempotency.Config{Methods: []string{"PUT"}}, method: "PUT", wantKey: "new"},
		{name: "custom methods exclude POST", cfg: idempotency.Config{Methods: []string{"PUT"}}, method: "POST"},
		{name: "no methods", cfg: idempotency.Config{Methods: []string{}}, method: "POST"},
		{name: "custom header", cfg: idempotency.Config{Header: "x-request-key"}, method: "POST", wantKey: "new", name2: "X-Request-Key"},
		{name: "custom header kept", cfg: idempotency.Config{Header: "X-Request-Key"}, method: "POST", header: http.Header{"X-Request-Key": {"mine"}}},
		{name: "X- header", cfg: idempotency.Config{Header: "X-Idempotency-Key"}, method: "POST", wantKey: "new", name2: "x-idempotency-key"},
		{name: "X- header, honoured host", cfg: idempotency.Config{Header: "x-idempotency-key", KeysHonored: true}, method: "POST", wantKey: "new", name2: "X-Idempotency-Key"},
		{name: "X- header, context key", cfg: idempotency.Config{Header: "X-Idempotency-Key"}, method: "POST", ctxKey: "k", wantKey: "k", name2: "X-Idempotency-Key"},
		{name: "custom header respects standard", cfg: idempotency.Config{Header: "X-Request-Key"}, method: "POST", header: http.Header{"Idempotency-Key": {"mine"}}},
		{name: "custom generator", cfg: idempotency.Config{NewKey: func() string { return "gen" }}, method: "POST", wantKey: "gen"},
		{name: "v7", cfg: idempotency.Config{NewKey: idempotency.NewKeyV7}, method: "POST", wantKey: "new7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &stub{}
			rt := idempotency.NewTransport(next, tt.cfg)
			ctx := context.Background()
			if tt.ctxKey != "" {
				ctx = idempotency.WithKey(ctx, tt.ctxKey)
			}
			req, err := http.NewRequestWithContext(ctx, tt.method, "http://example.test/x", nil)
			require.NoError(t, err)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			before := req.Header.Clone()

			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()

			assert.Equal(t, before, req.Header, "caller's header changed")
			sent := next.last()
			name := tt.name2
			if name == "" {
				name = "idempotency-key"
			}
			if tt.wantKey == "" {
				assert.Same(t, req, sent, "a request needing no key is passed on as is")
				return
			}
			assert.NotSame(t, req, sent, "a keyed request is a copy")
			require.Len(t, sent.Header[name], 1, "the key is under %q in %v", name, sent.Header)
			got := sent.Header[name][0]
			assert.Len(t, sent.Header, len(before)+1, "one header added")
			if tt.wantKey == "new" || tt.wantKey == "new7" {
				u, err := uuid.Parse(got)
				require.NoError(t, err, "key %q", got)
				want := uuid.Version(4)
				if tt.wantKey == "new7" {
					want = 7
				}
				assert.Equal(t, want, u.Version())
				assert.Equal(t, uuid.RFC4122, u.Variant())
				assert.Equal(t, u.String(), got, "canonical lower-case form")
			} else {
				assert.Equal(t, tt.wantKey, got)
			}
			if strings.EqualFold(name, idempotency.HeaderKey) || strings.EqualFold(name, idempotency.HeaderXKey) {
				assert.Equal(t, got, idempotency.ResponseKey(resp))
			}
		})
	}
}

func TestTransportFreshKeyPerCall(t *testing.T) {
	next := &stub{}
	rt := idempotency.NewTransport(next, idempotency.Config{})
	seen := map[string]bool{}
	for range 100 {
		req, _ := http.NewRequest("POST", "http://example.test/", nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		k := idempotency.ResponseKey(resp)
		assert.False(t, seen[k])
		seen[k] = true
	}
}

func TestTransportSharedValuesAreCapped(t *testing.T) {
	// An inner link that appends to a header value must not write into the
	// caller's backing array.
	vals := make([]string, 1, 4)
	vals[0] = "a"
	req, _ := http.NewRequest("POST", "http://example.test/", nil)
	req.Header["Accept"] = vals
	next := &stub{}
	rt := idempotency.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Add("Accept", "b")
		return next.RoundTrip(r)
	}), idempotency.Config{})
	_, err := rt.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, req.Header["Accept"])
	assert.Equal(t, "a", vals[:2][0])
	assert.Empty(t, vals[:2][1], "caller's spare capacity untouched")
	assert.Equal(t, []string{"a", "b"}, next.last().Header["Accept"])
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTransportBadInput(t *testing.T) {
	rt := idempotency.NewTransport(nil, idempotency.Config{})
	defer rt.CloseIdleConnections()
	resp, err := rt.RoundTrip(nil)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, idempotency.ErrNilRequest)
	assert.NotNil(t, rt.Next(), "nil next means a pooled transport")

	// A request with a nil header map still gets a key.
	next := &stub{}
	rt = idempotency.NewTransport(next, idempotency.Config{})
	req, _ := http.NewRequest("POST", "http://example.test/", nil)
	req.Header = nil
	_, err = rt.RoundTrip(req)
	require.NoError(t, err)
	assert.Nil(t, req.Header)
	assert.NotEmpty(t, idempotency.ResponseKey(&http.Response{Request: next.last()}))

	assert.Empty(t, idempotency.ResponseKey(nil))
	assert.Empty(t, idempotency.ResponseKey(&http.Response{}))
	_, ok := idempotency.KeyFromContext(nil) //nolint:staticcheck // nil context is the point
	assert.False(t, ok)
	_, ok = idempotency.KeyFromContext(idempotency.WithKey(context.Background(), ""))
	assert.False(t, ok, "an empty key is no key")
}

func TestTransportOnKey(t *testing.T) {
	var got []string
	next := &stub{}
	rt := idempotency.NewTransport(next, idempotency.Config{OnKey: func(r *http.Request, key string) {
		assert.Equal(t, key, idempotency.ResponseKey(&http.Response{Request: r}))
		got = append(got, key)
	}})
	for _, m := range []string{"POST", "GET", "PATCH"} {
		req, _ := http.NewRequest(m, "http://example.test/", nil)
		_, err := rt.RoundTrip(req)
		require.NoError(t, err)
	}
	assert.Len(t, got, 2)
}

// TestTransportWithRetryLoop sends POSTs through the client link and the
// retry loop to a real server that fails the first attempt of each key: the
// key of a host declared to honour keys makes the POST retryable, every
// attempt carries the same key, and the caller can read it from the
// response. Without the declaration the generated key licenses nothing.
func TestTransportWithRetryLoop(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get(idempotency.HeaderKey)
		mu.Lock()
		attempts[key]++
		n := attempts[key]
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: idempotency.NewTransport(transport.New(base, transport.Config{}), idempotency.Config{KeysHonored: true})}

	for i := range 5 {
		resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("order "+string(rune('a'+i))))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusCreated, resp.StatusCode)
		assert.Equal(t, "order "+string(rune('a'+i)), string(body))
		key := idempotency.ResponseKey(resp)
		require.NotEmpty(t, key)
		mu.Lock()
		assert.Equal(t, 2, attempts[key], "both attempts carried the same key")
		mu.Unlock()
	}
	mu.Lock()
	assert.Len(t, attempts, 5, "one key per call")
	mu.Unlock()

	// Without the declaration, or without the client link, the same POST
	// is not retried.
	for name, rt := range map[string]http.RoundTripper{
		"undeclared": idempotency.NewTransport(transport.New(base, transport.Config{}), idempotency.Config{}),
		"no link":    transport.New(base, transport.Config{}),
	} {
		resp, err := (&http.Client{Transport: rt}).Post(srv.URL, "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, name)
		if key := idempotency.ResponseKey(resp); key != "" {
			mu.Lock()
			assert.Equal(t, 1, attempts[key], "%s: sent once with its key", name)
			mu.Unlock()
		}
	}
}

// TestTransportKeyLicense checks what the retry loop's classifier makes of
// the request the link sends: a key licenses a repeat when the caller set
// it or the host is declared to honour keys, never when it was only
// generated.
func TestTransportKeyLicense(t *testing.T) {
	tests := []struct {
		name    string
		cfg     idempotency.Config
		ctx     context.Context
		header  http.Header
		license bool
	}{
		{"generated", idempotency.Config{}, context.Background(), nil, false},
		{"generated X-", idempotency.Config{Header: "X-Idempotency-Key"}, context.Background(), nil, false},
		{"generated, host honours keys", idempotency.Config{KeysHonored: true}, context.Background(), nil, true},
		{"generated X-, host honours keys", idempotency.Config{Header: "X-Idempotency-Key", KeysHonored: true}, context.Background(), nil, true},
		{"generated by NewKey", idempotency.Config{NewKey: idempotency.NewKeyV7}, context.Background(), nil, false},
		{"WithKey", idempotency.Config{}, idempotency.WithKey(context.Background(), "job-1"), nil, true},
		{"caller header", idempotency.Config{}, context.Background(), http.Header{"Idempotency-Key": {"mine"}}, true},
		{"caller X header", idempotency.Config{}, context.Background(), http.Header{"X-Idempotency-Key": {"mine"}}, true},
		{"custom header licenses nothing", idempotency.Config{Header: "X-Request-Key", KeysHonored: true}, context.Background(), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &stub{}
			rt := idempotency.NewTransport(next, tt.cfg)
			req, _ := http.NewRequestWithContext(tt.ctx, "POST", "http://example.test/", strings.NewReader("x"))
			for k, v := range tt.header {
				req.Header[k] = v
			}
			_, err := rt.RoundTrip(req)
			require.NoError(t, err)
			sent := next.last()
			assert.Equal(t, tt.license, classify.Idempotent(sent), "header %v", sent.Header)
			v := classify.Classify(sent, nil, io.ErrUnexpectedEOF)
			assert.Equal(t, tt.license, v.Outcome == classify.Retryable, "an EOF after sending: %v", v)
		})
	}
}

func TestTransportAllocations(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	rt := idempotency.NewTransport(nopRT{resp}, idempotency.Config{})
	req, _ := http.NewRequest("POST", "http://example.test/", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("User-Agent", "test")
	post := testing.AllocsPerRun(1000, func() { _, _ = rt.RoundTrip(req) })
	// The request copy (with the key inside it) and the header map (two).
	assert.LessOrEqual(t, post, 3.0, "POST with key injection")
	honored := idempotency.NewTransport(nopRT{resp}, idempotency.Config{KeysHonored: true})
	assert.LessOrEqual(t, testing.AllocsPerRun(1000, func() { _, _ = honored.RoundTrip(req) }), 3.0, "toward a host that honours keys")

	get, _ := http.NewRequest("GET", "http://example.test/", nil)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = rt.RoundTrip(get) }), "GET passes through")
}
