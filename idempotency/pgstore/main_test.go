package pgstore_test

import (
	"testing"

	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
)

// TestMain starts one throwaway PostgreSQL server for the package's tests
// and checks for leaked goroutines once they end.
func TestMain(m *testing.M) { pgtest.Main(m) }
