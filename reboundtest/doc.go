// Package reboundtest helps test code that uses rebound: Script, a
// scripted in-memory RoundTripper that works inside testing/synctest
// bubbles, and NoWait, an option that makes every wait of a chain zero
// for tests against real servers.
//
// # Recipe: virtual time with a Script
//
// Put the rebound chain in front of a Script, inside a synctest bubble.
// Backoff, Retry-After and a Step's Delay then pass in virtual time: the
// test runs at once, and its timing is exact, so it may assert it.
//
//	func TestChargeRetriesOnce(t *testing.T) {
//		synctest.Test(t, func(t *testing.T) {
//			script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
//				"payments.test": {
//					{Status: 503, Header: http.Header{"Retry-After": {"2"}}},
//					{Status: 201, Body: `{"id": "ch_1"}`},
//				},
//			}}
//			client := &http.Client{Transport: rebound.NewTransport(script)}
//			start := time.Now()
//			err := charge(t.Context(), client) // the code under test
//			require.NoError(t, err)
//			assert.Equal(t, 2, script.Count("payments.test"))
//			assert.GreaterOrEqual(t, time.Since(start), 2*time.Second) // the server's wait, honoured
//			assert.Zero(t, script.Open())                             // every body closed
//		})
//	}
//
// Build the chain inside the bubble (its timers belong to it), and give it
// the Script as its base: an httptest.Server inside a bubble hangs the
// test, because network I/O does not block durably. Steps answer with a
// status, headers and a body, or fail with an error (ErrReset after the
// request was written, ErrRefused before); a Delay longer than the
// request's deadline or AttemptTimeout makes a server that does not
// answer in time. Script.Calls shows what each attempt carried (its
// Idempotency-Key, its body, its attempt number).
//
// # Recipe: real servers without the waits
//
// Against an httptest.Server, outside a bubble, NoWait keeps every
// decision of the chain and drops its waits:
//
//	opts, err := rebound.LoadPolicyFile("testdata/policies.json")
//	require.NoError(t, err)
//	rt := rebound.NewTransport(nil, append(opts, reboundtest.NoWait())...)
//
// NoWait reaches every host policy, those of a policy file included,
// whatever the order of the options. It changes nothing else: the retry
// budget and the circuit breaker act as in production, so a test that
// sends many failing calls may see them refuse (set DisableBudget or
// DisableBreaker in its policy when that is not what it tests).
package reboundtest
