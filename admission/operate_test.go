package admission

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A key paused for 30 s by the server's hint, with two calls queued:
// Snapshot shows the pause and the queue without naming the credential,
// and Reset gives the queued calls their turns at once and limits no
// call after them.
func TestResetReleasesQueuedCallsAndForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := New(Config{})
		req := func() *http.Request { return get(t, t.Context(), "API.test", "secret-token") }
		pause(t, a, req, 503, "Retry-After", "30")
		start := time.Now()
		done := make(chan time.Time, 2)
		for range 2 {
			go func() {
				at, err := send(a, req(), ok)
				assert.NoError(t, err)
				done <- at
			}()
		}
		synctest.Wait()

		snap := a.Snapshot()
		require.Len(t, snap, 1)
		assert.Equal(t, "api.test", snap[0].Host)
		require.Len(t, snap[0].Keys, 1)
		k := snap[0].Keys[0]
		assert.Equal(t, 1, k.Credential, "credentials are numbered, never named")
		assert.Equal(t, LimitHint, k.Limit)
		assert.Greater(t, k.PausedFor, 25*time.Second)
		assert.Equal(t, 2, k.Queued)
		assert.Zero(t, a.Reset("other.test"))

		assert.Equal(t, 1, a.Reset("api.TEST."))
		for range 2 {
			assert.Equal(t, start, <-done, "given its turn at once")
		}
		synctest.Wait()
		queued, inflight, _ := a.idleForTest()
		assert.Zero(t, queued)
		assert.Zero(t, inflight)
		// The key's state, in flight at the reset, stays until the sweep
		// drops it, and limits nothing.
		snap = a.Snapshot()
		require.Len(t, snap, 1)
		assert.Equal(t, []KeyState{{Credential: 1}}, snap[0].Keys)
		_, wait, err := a.Take(req())
		require.NoError(t, err)
		assert.Zero(t, wait)

		var nilA *Admission
		assert.Nil(t, nilA.Snapshot())
		assert.Zero(t, nilA.Reset("api.test"))
	})
}
