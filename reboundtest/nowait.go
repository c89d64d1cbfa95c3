package reboundtest

import "github.com/rebound-http/rebound"

// NoWait returns an option that makes every wait of a rebound chain zero:
// on the default policy and on every host policy (those given with
// rebound.WithHostPolicy and those of a policy file), whatever the order
// of the options, it sets Retry.NoWait, so retries follow their failures
// at once, whether backoff or a server's Retry-After would have timed
// them, and a wait hint holds no host. Every decision stays as in
// production: the attempts, which outcomes are retried, a hint over the
// cap ending the loop, the budget and the breaker.
//
//	rt := rebound.NewTransport(base, append(fileOpts, reboundtest.NoWait())...)
//
// Inside a testing/synctest bubble waits cost no real time anyway; NoWait
// is for tests against real servers (httptest), where a 100 ms backoff or
// a Retry-After of seconds would otherwise be slept through.
func NoWait() rebound.Option {
	return rebound.EditPolicies(func(_ string, p *rebound.Policy) { p.Retry.NoWait = true })
}
