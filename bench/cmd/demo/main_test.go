package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: every
// server, proxy, connection and call of a run must be over when run
// returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
