// Package faults is rebound's fault-injection suite. It has no API: its
// tests drive three clients side by side through real faults and check
// that the rebound chain never does worse than a plain http.Client.
//
// The clients, each with its own pooled go-cleanhttp transport:
//
//   - plain: an http.Client over that transport, nothing else;
//   - rebound: the default chain, rebound.NewTransport with no options;
//   - rebound without breaker: the same with Policy.DisableBreaker.
//
// The rate-limiter scenarios of issue 19 (ratelimit_test.go) add two peer
// libraries, configured as their documentation suggests: go-retryablehttp
// (NewClient defaults) and failsafe-go (failsafehttp's retry policy around
// its circuit breaker).
//
// The faults, all on 127.0.0.1 and started by the tests themselves:
//
//   - Shopify toxiproxy, embedded through its Go API (no binary, nothing
//     downloaded at run time), between the clients and an httptest
//     server: connections reset on the way up or down, stalled
//     connections, responses cut mid-body, sliced and delayed streams,
//     slow closes;
//   - nginx from Debian, started on a free port with a configuration from
//     testdata/: limit_req answering 429 or 503 with Retry-After (without
//     a burst, and with burst=10 nodelay), and a reverse proxy whose
//     upstream dies (502), hangs (504) and returns;
//   - rate limiters written here, as httptest servers: a token bucket, a
//     leaky bucket and a fixed window announced in the IETF draft's
//     RateLimit and RateLimit-Policy headers.
//     Without an nginx binary these tests skip, except under CI=true,
//     where they fail.
//
// Every scenario prints a table (go test -v) of calls, share of calls that
// succeeded, attempts sent, requests the upstream served, amplification
// and time to recover, and asserts the issue 9 bounds: success rate no
// lower than the plain client's (within a stated statistical margin), no
// lockout by a rate limiter, recovery soon after the upstream returns, no
// call outliving its deadline, no leaked goroutine or connection, and no
// attempt of a call sent before a wait hint that call received ended (the
// "early" column). The rate-limiter scenarios print each client's goodput
// (what the limiter admitted, per second and as a share of the limit), the
// share of attempts refused and p50/p99 call latency beside issue 19's
// targets; docs/backpressure-results.md has the numbers and the command.
package faults
