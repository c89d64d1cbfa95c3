package idempotency_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/rebound-http/rebound/idempotency"
)

// A handler that sheds load before doing anything releases its key, so the
// client's retry runs afresh instead of replaying the 503.
func ExampleRelease() {
	overloaded := true
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if overloaded {
			idempotency.Release(r) // nothing happened: let the retry run
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "order 1")
	})
	h := idempotency.Middleware(nil, idempotency.MiddlewareConfig{})(create)

	for range 2 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"item":"pizza"}`))
		r.Header.Set("Idempotency-Key", "order-42")
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
		overloaded = false
	}
	// Output:
	// 503 busy
	// 201 order 1
}
