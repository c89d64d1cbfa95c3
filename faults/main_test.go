package faults

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: a client's
// connection, a held handler or an nginx waiter that outlived its test.
//
// The stages of toxiproxy's own pipelines are ignored: when a link ends
// early (reset_peer, limit_data, or a client that closed its end while a
// chunk was on its way) a stage can be left blocked for ever handing a
// chunk to the next stage or the writer, which has stopped reading. Those
// goroutines belong to toxiproxy, run ToxicStub.Run, hold no connection
// (the proxy closed them all at Stop) and have no rebound code on their
// stack; connections the clients leave open are caught by
// checkConnections.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"))
}
