package idempotency_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rebound-http/rebound/idempotency"
)

// FuzzMiddlewareKey feeds the middleware arbitrary key headers (one line,
// or both names at once), scopes and bodies. It never panics; a key
// ParseKey refuses is answered 400 without running the handler; an
// accepted key runs the handler once, which reads back exactly the parsed
// key and the scope with RequestKey; a repeat is replayed; and the same
// key in another scope runs afresh. Seeds are in
// testdata/fuzz/FuzzMiddlewareKey.
func FuzzMiddlewareKey(f *testing.F) {
	f.Add("order-1", "", "tenant", "{}")
	f.Add(`"quoted \" key"`, "", "", "")
	f.Add("a", "b", "t", "x")
	f.Add("", "", "s\n\nt", "")
	f.Add("  \t", "", "\xff", "body")
	f.Add(strings.Repeat("k", 256), "", "", "")
	f.Fuzz(func(t *testing.T, key, xkey, scope, body string) {
		runs := 0
		var gotKey, gotScope string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs++
			var ok bool
			gotKey, gotScope, ok = idempotency.RequestKey(r)
			if !ok {
				t.Error("RequestKey found no key inside the handler")
			}
			w.WriteHeader(http.StatusCreated)
		})
		currentScope := scope
		mw := idempotency.Middleware(nil, idempotency.MiddlewareConfig{
			Scope: func(*http.Request) string { return currentScope }})(h)
		serve := func() *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			req.Header[idempotency.HeaderKey] = []string{key}
			if xkey != "" {
				req.Header[idempotency.HeaderXKey] = []string{xkey}
			}
			rec := httptest.NewRecorder()
			mw.ServeHTTP(rec, req)
			return rec
		}

		rec := serve()
		parsed, err := idempotency.ParseKey(key)
		if err != nil || xkey != "" {
			if rec.Code != http.StatusBadRequest || runs != 0 {
				t.Fatalf("key %q (and %q): %d after %d runs, want 400 and none", key, xkey, rec.Code, runs)
			}
			return
		}
		if rec.Code != http.StatusCreated || runs != 1 {
			t.Fatalf("key %q: %d after %d runs, want 201 after 1", key, rec.Code, runs)
		}
		if gotKey != parsed || gotScope != scope {
			t.Fatalf("RequestKey = %q, %q; want %q, %q", gotKey, gotScope, parsed, scope)
		}
		if rec = serve(); rec.Code != http.StatusCreated || rec.Header().Get(idempotency.HeaderReplayed) != "true" || runs != 1 {
			t.Fatalf("repeat of %q: %d, replayed %q, %d runs", key, rec.Code, rec.Header().Get(idempotency.HeaderReplayed), runs)
		}
		currentScope = scope + "/other"
		if rec = serve(); rec.Code != http.StatusCreated || runs != 2 || gotScope != currentScope {
			t.Fatalf("key %q in another scope: %d, %d runs, scope %q", key, rec.Code, runs, gotScope)
		}
	})
}
