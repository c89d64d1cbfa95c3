package redisstore_test

import (
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
)

// benchStore returns a store on a fresh miniredis, or on the real Redis
// named by REBOUND_REDIS_ADDR when it is set.
func benchStore(b *testing.B) *redisstore.Store {
	addr := ""
	if addr = os.Getenv(envAddr); addr == "" {
		addr = miniredis.RunT(b).Addr()
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { _ = c.Close() })
	return redisstore.New(c, redisstore.Config{Prefix: "rebound:bench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"})
}

// BenchmarkReserveComplete is the store's part of a first request: reserve
// a new key, then store a small response.
func BenchmarkReserveComplete(b *testing.B) {
	s := benchStore(b)
	resp := &idempotency.Response{
		Status: 201,
		Header: map[string][]string{"Content-Type": {"application/json"}},
		Body:   []byte(`{"id":"ord_123","status":"created"}`),
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := strconv.FormatInt(seq.Add(1), 10)
			rec, reserved, err := s.Reserve(ctx, key, fp(1), time.Minute)
			if err != nil || !reserved {
				b.Fatal(reserved, err)
			}
			if err := s.Complete(ctx, key, rec.Token, resp, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReserveReplay is the store's part of a repeat: Reserve finds
// the stored response.
func BenchmarkReserveReplay(b *testing.B) {
	s := benchStore(b)
	rec, _, err := s.Reserve(ctx, "k", fp(1), time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	resp := &idempotency.Response{Status: 201, Body: []byte(`{"id":"ord_123","status":"created"}`)}
	if err := s.Complete(ctx, "k", rec.Token, resp, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			got, reserved, err := s.Reserve(ctx, "k", fp(1), time.Minute)
			if err != nil || reserved || got.Response == nil {
				b.Fatal(reserved, err)
			}
		}
	})
}
