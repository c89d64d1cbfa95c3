package redisstore_test

import (
	"os"
	"testing"

	"github.com/rebound-http/rebound/idempotency/storetest"
)

// TestConformance runs the Store conformance suite against miniredis,
// whose clock the suite moves, and against the real Redis named by
// REBOUND_REDIS_ADDR when it is set (skipping the tests that move time).
func TestConformance(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			b, _ := miniBackend(t)
			return storetest.Backend{Store: b.store, Advance: b.fastForward}
		})
	})
	t.Run("redis", func(t *testing.T) {
		addr := os.Getenv(envAddr)
		if addr == "" {
			t.Skip(envAddr + " not set")
		}
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return storetest.Backend{Store: realBackend(t, addr).store}
		})
	})
}
