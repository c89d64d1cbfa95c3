package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// derivedServer serves a handler that reports the derived keys of its
// request, behind the middleware with a memory store. The first run of
// key "retry" releases its key, so that a repeat runs the handler again.
func derivedServer(t *testing.T, scope func(*http.Request) string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var got []string
	released := false
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		charge, ok1 := idempotency.DerivedKey(r.Context(), "charge")
		email, ok2 := idempotency.DerivedKey(r.Context(), "email")
		mu.Lock()
		got = append(got, charge, email)
		if ok1 != ok2 || ok1 != (r.Header.Get("Idempotency-Key") != "") {
			t.Errorf("DerivedKey ok = %v, %v for key %q", ok1, ok2, r.Header.Get("Idempotency-Key"))
		}
		if r.Header.Get("Idempotency-Key") == "retry" && !released {
			released = true
			idempotency.Release(r)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	srv := httptest.NewServer(idempotency.Middleware(nil, idempotency.MiddlewareConfig{Scope: scope})(h))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

// derivedPost sends a POST with key (none when empty) and Authorization
// auth.
func derivedPost(t *testing.T, url, key, auth string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
}

func TestDerivedKey(t *testing.T) {
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	srv, got := derivedServer(t, nil)

	derivedPost(t, srv.URL, "retry", "alice")
	first := got()
	require.Len(t, first, 2)
	assert.NotEqual(t, first[0], first[1], "each name its own key")
	for _, k := range first {
		u, err := uuid.Parse(k)
		require.NoError(t, err)
		assert.EqualValues(t, 8, u.Version())
		assert.Equal(t, uuid.RFC4122, u.Variant())
		_, err = idempotency.ParseKey(k)
		assert.NoError(t, err, "a valid key for the downstream server")
	}
	derivedPost(t, srv.URL, "retry", "alice")
	assert.Equal(t, first, got(), "the handler's second run sends the same keys")

	derivedPost(t, srv.URL, "other", "alice")
	other := got()
	assert.NotEqual(t, first[0], other[0], "another key")
	assert.NotEqual(t, first[1], other[1])

	derivedPost(t, srv.URL, "retry", "bob")
	bob := got()
	assert.NotEqual(t, first[0], bob[0], "the same key in another scope")

	derivedPost(t, srv.URL, "", "alice")
	assert.Equal(t, []string{"", ""}, got(), "a request without a key has no derived keys")

	key, ok := idempotency.DerivedKey(context.Background(), "charge")
	assert.False(t, ok)
	assert.Empty(t, key)
}

// TestDerivedKeyStable pins one derived key (computed independently,
// from the definition: SHA-256 over the namespace and the length-prefixed
// store key "tenant-1\norder-42" and "charge", version 8): a key that
// changed between versions of this package would let a retry during a
// deploy repeat the downstream call.
func TestDerivedKeyStable(t *testing.T) {
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	srv, got := derivedServer(t, func(*http.Request) string { return "tenant-1" })
	derivedPost(t, srv.URL, "order-42", "")
	assert.Equal(t, "fc1daf8a-36c0-8609-adc4-d7e71beb730d", got()[0])
}

func TestStoreKeyOf(t *testing.T) {
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	var got string
	var ok bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, ok = idempotency.StoreKeyOf(r.Context()) })
	srv := httptest.NewServer(idempotency.Middleware(nil, idempotency.MiddlewareConfig{
		Scope: func(*http.Request) string { return "tenant-1" },
	})(h))
	defer srv.Close()
	derivedPost(t, srv.URL, "order-42", "")
	assert.True(t, ok)
	assert.Equal(t, idempotency.StoreKey("tenant-1", "order-42"), got)
	derivedPost(t, srv.URL, "", "")
	assert.False(t, ok, "no key, no store key")
	assert.Empty(t, got)
}
