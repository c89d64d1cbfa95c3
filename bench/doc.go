// Package bench measures rebound against its peers: go-retryablehttp,
// failsafe-go's failsafehttp and sony/gobreaker.
//
// It is its own module so that the peers never become dependencies of
// rebound itself. Everything lives in _test.go files: the benchmarks
// (BenchmarkOverhead, BenchmarkBreakerGate) compare the cost of each
// library on a healthy path, and the tests (TestAmplification,
// TestFalseTrips) compare how each behaves when a server fails. See
// README.md for the commands and the figures measured.
package bench
