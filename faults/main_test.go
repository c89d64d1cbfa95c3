package faults

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: a client's
// connection, a held handler or an nginx waiter that outlived its test.
//
// One goroutine of toxiproxy itself is ignored: a toxic that ends its
// link early (reset_peer, limit_data) stops reading from the stage before
// it, and that stage, toxiproxy's NoopToxic, then waits for ever to hand
// on a chunk that arrived after the first one. It belongs to toxiproxy,
// holds no connection, and no rebound code is on its stack.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"))
}
