package storetest_test

import (
	"testing"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/rebound-http/rebound/idempotency/storetest"
)

// TestMemoryStore runs the suite against MemoryStore, in virtual time.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return storetest.Backend{Store: idempotency.NewMemoryStore(idempotency.MemoryConfig{}), VirtualTime: true}
	})
}
