package idempotency_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/transport"
)

// The client link goes outside the retry loop, so every attempt of a call
// carries the same key. The caller reads the key from the response.
func ExampleNewTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("server got a key:", r.Header.Get("Idempotency-Key") != "")
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	retry := transport.New(nil, transport.Config{})
	defer retry.CloseIdleConnections()
	client := &http.Client{Transport: idempotency.NewTransport(retry, idempotency.Config{})}

	resp, err := client.Post(srv.URL, "application/json", strings.NewReader(`{"amount":10}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, len(idempotency.ResponseKey(resp)), "character key")
	// Output:
	// server got a key: true
	// 201 36 character key
}

// A job that may run again after a crash persists its key and passes it
// with WithKey, so the server recognises the re-run as the same operation.
func ExampleWithKey() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("server got:", r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()

	rt := idempotency.NewTransport(nil, idempotency.Config{})
	defer rt.CloseIdleConnections()
	client := &http.Client{Transport: rt}

	ctx := idempotency.WithKey(context.Background(), "invoice-2026-0042")
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader("..."))
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	// Output:
	// server got: invoice-2026-0042
}

// The middleware runs the handler once per key and replays its response
// to repeats.
func ExampleMiddleware() {
	runs := 0
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d", runs)
	})
	store := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	h := idempotency.Middleware(store, idempotency.MiddlewareConfig{})(create)

	for range 2 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"item":"pizza"}`))
		r.Header.Set("Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
		h.ServeHTTP(w, r)
		body, _ := io.ReadAll(w.Body)
		fmt.Printf("%d %q replayed=%q\n", w.Code, body, w.Header().Get("Idempotent-Replayed"))
	}
	fmt.Println("handler runs:", runs)
	// Output:
	// 201 "order 1" replayed=""
	// 201 "order 1" replayed="true"
	// handler runs: 1
}

func ExampleParseKey() {
	for _, v := range []string{
		`8e03978e-40d5-43e8-bc93-6894a57f9324`,
		`"order \"42\""`,
		`""`,
		`two words`,
	} {
		key, err := idempotency.ParseKey(v)
		fmt.Printf("%q %v\n", key, err)
	}
	// Output:
	// "8e03978e-40d5-43e8-bc93-6894a57f9324" <nil>
	// "order \"42\"" <nil>
	// "" idempotency: empty key
	// "" idempotency: malformed key
}
