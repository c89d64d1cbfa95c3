package pgstore_test

import (
	"testing"
	"time"

	"github.com/rebound-http/rebound/idempotency/pgstore"
	"github.com/rebound-http/rebound/idempotency/storetest"
)

// TestConformance runs the Store conformance suite against a real
// PostgreSQL. The suite's clock moves by moving every record of the
// test's table into the past, which is what the database's clock moving
// forward would do to them.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s, pool := newStore(t, pgstore.Config{})
		return storetest.Backend{Store: s, Advance: func(d time.Duration) { age(t, pool, d) }}
	})
}
