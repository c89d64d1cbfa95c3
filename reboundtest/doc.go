// Package reboundtest helps test code that uses rebound: Script, a
// scripted in-memory RoundTripper that works inside testing/synctest
// bubbles; NoWait, an option that makes every wait of a chain zero for
// tests against real servers; Route, a base transport that sends a
// production host name to a test server, so host policies apply; and
// Faults, a base transport that injects failures per host and rate, for
// rehearsals in a real process.
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
// idempotency key in Call.Key, its body, its attempt number).
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
//
// # Recipe: production host names, test servers
//
// Host policies match host names: a test that calls an httptest.Server
// at 127.0.0.1 gets the default policy, not the one of "payments.test"
// that the code under test relies on. Route keeps the production URL and
// sends its connections to the test server:
//
//	srv := httptest.NewTLSServer(handler)
//	defer srv.Close()
//	base, err := reboundtest.Route(map[string]*httptest.Server{"payments.test": srv})
//	require.NoError(t, err)
//	rt := rebound.NewTransport(base, append(policyFileOpts, reboundtest.NoWait())...)
//	defer rt.CloseIdleConnections()
//
// Every link then sees "payments.test": its policy, its breaker, its
// budget and its admission state, as in production.
//
// # Recipe: rehearse failures in staging
//
// Faults goes under the chain, in the real process, and stays off (one
// atomic load an attempt, no allocation) until its rules are set, behind
// a flag or an admin endpoint of your own:
//
//	faults := &reboundtest.Faults{Seed: 1}
//	client := &http.Client{Transport: rebound.NewTransport(faults)}
//	...
//	err := faults.Set(reboundtest.Fault{Host: "payments.internal", Rate: 0.3, Status: 503})
//	...
//	faults.Set() // off
//
// A rule injects an error (ErrRefused, ErrReset, ErrTimeout), a status
// with or without a Retry-After hint, latency, or a body cut short, on a
// share of a host's attempts drawn from the Seed. ExampleFaults_rehearsal
// replays the phases of rebound's demo (an outage, a rate limit, a flaky
// host, resets) against a client.
package reboundtest
