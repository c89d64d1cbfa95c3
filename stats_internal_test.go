package rebound

import (
	"net/http"
	"testing"

	"github.com/rebound-http/rebound/transport"
)

// BenchmarkStatsCount measures the counters' share of a healthy call: the
// loop's EventAttempt reaching the counting observer (the host found, one
// shard incremented), from one goroutine and from parallel ones.
func BenchmarkStatsCount(b *testing.B) {
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/things", nil)
	t := newStatsTable()
	obs := t.observer(nil)
	e := transport.Event{Kind: transport.EventAttempt, Request: req, Attempt: 1}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			obs.Observe(e)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				obs.Observe(e)
			}
		})
	})
}

// TestStatsShards checks that the shards are spread: calls from many
// goroutines land on more than one shard when there are several.
func TestStatsShards(t *testing.T) {
	st := newStatsTable()
	if st.shards == 1 {
		t.Skip("GOMAXPROCS=1: one shard")
	}
	c := st.named("api.test")
	done := make(chan struct{})
	for range 64 {
		go func() {
			st.shard(c).first.Add(1)
			done <- struct{}{}
		}()
	}
	for range 64 {
		<-done
	}
	used := 0
	for i := range c.shards {
		if c.shards[i].first.Load() > 0 {
			used++
		}
	}
	// With s shards, 64 goroutines on uniformly spread stacks all land on
	// one shard with odds s^-63: never, in practice.
	if used < 2 {
		t.Fatalf("64 goroutines used %d of %d shards", used, st.shards)
	}
}
