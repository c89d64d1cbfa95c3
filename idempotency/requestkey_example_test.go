package idempotency_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/rebound-http/rebound/idempotency"
)

// A handler reads the key its request came with, to log it or to name
// the record it creates after it.
func ExampleRequestKey() {
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, scope, _ := idempotency.RequestKey(r)
		fmt.Printf("creating the order for key %q in scope %q\n", key, scope)
		w.WriteHeader(http.StatusCreated)
	})
	h := idempotency.Middleware(nil, idempotency.MiddlewareConfig{
		// The tenant an authentication middleware found.
		Scope: func(r *http.Request) string { return r.Header.Get("X-Tenant") },
	})(orders)

	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", "order-7f3a")
		req.Header.Set("X-Tenant", "acme")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, "replayed:", rec.Header().Get(idempotency.HeaderReplayed) == "true")
	}
	// Output:
	// creating the order for key "order-7f3a" in scope "acme"
	// 201 replayed: false
	// 201 replayed: true
}
