package pgtest_test

import (
	"context"
	"testing"

	"github.com/rebound-http/rebound/idempotency/pgstore/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestServer checks that the harness's server answers, and that each Pool
// has a schema of its own.
func TestServer(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.Pool(t), pgtest.Pool(t)
	if _, err := a.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatalf("second schema should not see the first's table: %v", err)
	}
	var fsync string
	if err := a.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" {
		t.Errorf("fsync = %q, want off", fsync)
	}
}
