package main

import (
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a measurement leaves a goroutine behind: its
// servers, connections and hedges must all be over when run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A short run prints a row per client and protocol; the plain client sends one request
// per call, the hedging ones more (200 calls at 5 % slow answers have at
// least one slow one with probability 1 − 0.95²⁰⁰ > 0.9999, and it is
// hedged once the warm-up has taught the delay). Timings are printed, not
// asserted.
func TestRunShort(t *testing.T) {
	var out strings.Builder
	err := run([]string{"-calls", "200", "-warmup", "150", "-workers", "4", "-slow", "50ms"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	load := map[string]float64{}
	for _, line := range strings.Split(out.String(), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 11 || strings.HasPrefix(strings.TrimSpace(cells[1]), "client") || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(cells[8]), 64)
		if err != nil {
			t.Fatalf("load %q: %v", cells[8], err)
		}
		load[strings.TrimSpace(cells[1])+" over "+strings.TrimSpace(cells[2])] = f
	}
	if len(load) != 2*len(clients) {
		t.Fatalf("%d rows, want %d (every client over h1 and h2)", len(load), 2*len(clients))
	}
	for name, l := range load {
		switch {
		case strings.Contains(name, "never hedges"):
			if l != 1 {
				t.Errorf("%s: %.3f requests per call, want 1", name, l)
			}
		case strings.Contains(name, "Hedge"):
			if l <= 1 {
				t.Errorf("%s: %.3f requests per call, want hedges", name, l)
			}
		case l != 1:
			t.Errorf("%s: %.3f requests per call, want 1", name, l)
		}
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-clients", "nope"}, {"-calls", "0"}, {"-slow-share", "2"}, {"-proto", "h3"}} {
		if err := run(args, &strings.Builder{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
