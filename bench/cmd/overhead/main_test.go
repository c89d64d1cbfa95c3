package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Three rounds in which the machine's speed changes: bare's own figure
// moves from 100 to 300, and each library stays a fixed amount above it
// in its round. Paired by round, the overheads are exact; unpaired
// medians (rebound 300, bare 200) would give 100 instead of 20.
const threeRounds = `goos: linux
BenchmarkOverhead/call=Do/method=GET/lib=bare-2    10  100 ns/op  100 cpu-ns/op  0 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=rebound-2 10  120 ns/op  120 cpu-ns/op  0 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=peer-2    10  140 ns/op  140 cpu-ns/op  5 allocs/op
goos: linux
BenchmarkOverhead/call=Do/method=GET/lib=peer-2    10  340 ns/op  340 cpu-ns/op  5 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=rebound-2 10  320 ns/op  320 cpu-ns/op  0 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=bare-2    10  300 ns/op  300 cpu-ns/op  0 allocs/op
goos: linux
BenchmarkOverhead/call=Do/method=GET/lib=rebound-2 10  220 ns/op  220 cpu-ns/op  0 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=bare-2    10  200 ns/op  200 cpu-ns/op  0 allocs/op
BenchmarkOverhead/call=Do/method=GET/lib=peer-2    10  240 ns/op  240 cpu-ns/op  5 allocs/op
BenchmarkBreakerGate/rebound/serial-2              10   50 ns/op
`

func TestPairedOverhead(t *testing.T) {
	runs, err := parse(strings.NewReader(threeRounds), "cpu-ns/op")
	if err != nil {
		t.Fatal(err)
	}
	got := runs["BenchmarkOverhead/call=Do/method=GET"]
	if len(got) != 3 || len(got["bare"]) != 3 {
		t.Fatalf("parsed %v, want 3 libraries over 3 rounds", got)
	}
	var out strings.Builder
	report(&out, runs, "bare", []string{"peer"}, "cpu-ns/op")
	for _, want := range []string{
		"(cpu-ns/op, 3 rounds)",
		"| rebound | 220 | 20.0 [20.0, 20.0] | 0.50 [0.50, 0.50] |",
		"| peer | 240 | 40.0 [40.0, 40.0] | — |",
		"| bare | 200 | — | — |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "BreakerGate") {
		t.Errorf("a benchmark without lib= was reported:\n%s", out.String())
	}
}

func TestParseRejectsABadFigure(t *testing.T) {
	_, err := parse(strings.NewReader("goos: linux\nBenchmarkOverhead/lib=bare-2 10 x cpu-ns/op\n"), "cpu-ns/op")
	if err == nil {
		t.Fatal("a figure that is not a number was accepted")
	}
}
