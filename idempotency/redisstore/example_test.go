package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
)

// The store's operations, as the middleware uses them. miniredis stands in
// for a Redis server here.
func ExampleNew() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	store := redisstore.New(client, redisstore.Config{Prefix: "shop:idem:"})
	ctx := context.Background()
	fp := idempotency.Fingerprint{1}

	rec, reserved, _ := store.Reserve(ctx, "order-42", fp, time.Minute)
	fmt.Println("reserved:", reserved)
	_, reserved, _ = store.Reserve(ctx, "order-42", fp, time.Minute)
	fmt.Println("reserved again:", reserved)

	err = store.Complete(ctx, "order-42", rec.Token, &idempotency.Response{Status: 201, Body: []byte("ok")}, time.Hour)
	fmt.Println("complete:", err)
	err = store.Release(ctx, "order-42", rec.Token)
	fmt.Println("release after complete:", err)

	got, found, _ := store.Lookup(ctx, "order-42")
	fmt.Println("found:", found, got.Response.Status, string(got.Response.Body))
	fmt.Println("in Redis:", mr.Exists("shop:idem:order-42"))
	// Output:
	// reserved: true
	// reserved again: false
	// complete: <nil>
	// release after complete: idempotency: reservation lost
	// found: true 201 ok
	// in Redis: true
}

// The middleware with a Redis store: a repeat of a request is replayed,
// not run again.
func Example_middleware() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	runs := 0
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d", runs)
	})
	store := redisstore.New(client, redisstore.Config{})
	srv := httptest.NewServer(idempotency.Middleware(store, idempotency.MiddlewareConfig{})(create))
	defer srv.Close()

	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"item":"tea"}`))
		req.Header.Set("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324")
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %q replayed=%q\n", resp.StatusCode, body, resp.Header.Get("Idempotent-Replayed"))
	}
	fmt.Println("handler runs:", runs)
	// Output:
	// 201 "order 1" replayed=""
	// 201 "order 1" replayed="true"
	// handler runs: 1
}
