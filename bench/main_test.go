package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind. None of the
// peers starts a goroutine from a package-level variable, so nothing needs
// to be ignored: every goroutine seen here was started by a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
