// Package bench measures rebound against its peers: go-retryablehttp,
// failsafe-go's failsafehttp and sony/gobreaker.
//
// It is its own module so that the peers never become dependencies of
// rebound itself. The comparisons live in _test.go files: the benchmarks
// (BenchmarkOverhead, BenchmarkLoopback, BenchmarkBreakerGate,
// BenchmarkLeakProbe) compare the cost of each library on a healthy path
// and what it leaves behind, and the tests (TestAmplification,
// TestFalseTrips) compare how each behaves when a server fails. The
// command cmd/demo (make demo) replays a scripted outage against all of
// them. See README.md for the commands and the figures measured.
package bench
