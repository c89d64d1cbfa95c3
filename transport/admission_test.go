package transport_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/transport"
)

// A panic in the transport below gives the attempt's turn back: the next
// call takes it at once instead of waiting a turn nobody used.
func TestPanicBelowGivesTheTurnBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			switch n {
			case 1: // a quota of one turn a second, no burst
				return response(req, 200, "ok", "RateLimit", `"default";r=10;t=10`), nil
			case 2:
				panic("base exploded")
			}
			return response(req, 200, "ok"), nil
		}}
		rt := transport.New(base, transport.Config{})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		func() {
			defer func() { assert.Equal(t, "base exploded", recover()) }()
			rt.RoundTrip(get(t, t.Context()))
		}()
		start := time.Now()
		resp, err = rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Zero(t, time.Since(start), "the panicked attempt's turn was given back")
	})
}

// The retry of a call that received a hint never goes before it, and a
// call refused for its deadline names what limited the host.
func TestRetryNeverBeforeItsOwnHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sent []time.Time
		base := &stub{respond: func(n int, req *http.Request) (*http.Response, error) {
			sent = append(sent, time.Now())
			if n == 1 {
				return response(req, 429, "slow down", "Retry-After", "2"), nil
			}
			return response(req, 200, "ok"), nil
		}}
		var events []transport.Event
		rt := transport.New(base, transport.Config{Observer: transport.ObserverFunc(func(e transport.Event) { events = append(events, e) })})
		resp, err := rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err)
		resp.Body.Close()
		require.Len(t, sent, 2)
		assert.GreaterOrEqual(t, sent[1].Sub(sent[0]), 2*time.Second)

		// A second call's turn is after the pause: refused at once with
		// a 1 s deadline... unless the pause has ended. Make a new one.
		base.respond = func(n int, req *http.Request) (*http.Response, error) {
			return response(req, 429, "slow down", "Retry-After", "30"), nil
		}
		resp, err = rt.RoundTrip(get(t, t.Context()))
		require.NoError(t, err) // 30 s fits the 60 s cap: waited... the context has no deadline
		resp.Body.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = rt.RoundTrip(get(t, ctx))
		require.ErrorIs(t, err, transport.ErrHeld)
		require.ErrorIs(t, err, admission.ErrHint)
		last := events[len(events)-1]
		assert.Equal(t, transport.StopHeld, last.Stop)
		assert.Equal(t, admission.LimitHint, last.Limit)
	})
}
