// Command demo replays a scripted outage against rebound and its peers and
// prints what each did to the server and for its caller.
//
// Every strategy (a plain http.Client, a naive immediate-retry loop,
// go-retryablehttp, failsafe-go with a circuit breaker, and rebound with
// its defaults) gets its own server on 127.0.0.1 behind an in-process
// toxiproxy, and the same open-loop workload: a fixed rate of GETs and
// keyed POSTs, each call with a deadline. The server goes through six
// phases: healthy; a full outage (503, no hint); a rate limit (429 and 503
// with Retry-After); 30 % random 503s; 30 % of connections reset; healthy
// again. All strategies run at once, on one timeline.
//
// It prints a line per phase while it runs, then a table, and writes a
// chart (PNG and SVG) of the server's load and the calls' success rate
// over time, with demo.src, the hash of the code that drew it. `make
// demo-docs` copies the three to docs/, where a test checks that the
// committed chart was drawn by the code on the branch.
//
//	make demo                            # about 50 s
//	go run ./cmd/demo -scale 3           # every phase three times longer
//	go run ./cmd/demo -strategies plain,rebound -out /tmp/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	cfg config
	out string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.Float64Var(&o.cfg.scale, "scale", 1, "multiply every phase's length (1: 47 s of traffic; 3 for a longer look)")
	fs.Float64Var(&o.cfg.rate, "rate", 40, "calls per second per strategy, open loop")
	fs.IntVar(&o.cfg.postEvery, "post-every", 3, "every n-th call is a keyed POST, the others GETs")
	fs.DurationVar(&o.cfg.timeout, "timeout", 5*time.Second, "each call's deadline")
	fs.Uint64Var(&o.cfg.seed, "seed", 1, "seed of the flaky phase's failures")
	fs.BoolVar(&o.cfg.dedup, "dedup", false, "the server honours Idempotency-Key (rebound's idempotency.Middleware): a repeated POST gets the stored answer")
	fs.StringVar(&o.out, "out", "demo-out", "directory for the chart (demo.png, demo.svg) and the table (table.txt)")
	names := fs.String("strategies", "", "comma-separated subset of: "+strategyNames())
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("demo: unexpected arguments %q", fs.Args())
	}
	if o.cfg.postEvery < 1 {
		return o, fmt.Errorf("demo: -post-every %d must be at least 1", o.cfg.postEvery)
	}
	sts, err := pickStrategies(*names)
	if err != nil {
		return o, err
	}
	o.cfg.strategies = sts
	return o, nil
}

func strategyNames() string {
	var ns []string
	for _, s := range strategies {
		ns = append(ns, s.name)
	}
	return strings.Join(ns, ",")
}

// pickStrategies returns the strategies named in list, in the table's
// order; all of them for an empty list.
func pickStrategies(list string) ([]strategy, error) {
	if strings.TrimSpace(list) == "" {
		return strategies, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, s := range strategies {
			found = found || s.name == n
		}
		if !found {
			return nil, fmt.Errorf("demo: unknown strategy %q (known: %s)", n, strategyNames())
		}
		want[n] = true
	}
	var out []strategy
	for _, s := range strategies {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func mainErr(args []string, stdout io.Writer) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return replay(ctx, o, stdout)
}

// replay runs the demo with o and writes the progress, the table and the
// chart's paths to w.
func replay(ctx context.Context, o options, w io.Writer) error {
	sched, err := newSchedule(o.cfg.scale)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "rebound demo: %d strategies at %.0f calls/s each (1 in %d a keyed POST), deadline %v, %s, %s, %d cores\n",
		len(o.cfg.strategies), o.cfg.rate, o.cfg.postEvery, o.cfg.timeout, runtime.Version(), time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	for _, s := range o.cfg.strategies {
		fmt.Fprintf(w, "  %-13s %s\n", s.name, s.setup)
	}
	if o.cfg.dedup {
		fmt.Fprintln(w, "  the server runs POSTs behind idempotency.Middleware: a repeated key is answered from the store")
	}
	var at time.Duration
	for _, p := range sched {
		fmt.Fprintf(w, "  %5.1fs %-9s %s\n", at.Seconds(), p.name, p.desc)
		at += p.dur
	}
	fmt.Fprintln(w)

	results, err := run(ctx, o.cfg, sched, w)
	if err != nil {
		return err
	}
	var table strings.Builder
	writeTable(&table, summarize(sched, results))
	for _, r := range results {
		if r.unclosed > 0 {
			fmt.Fprintf(&table, "%s left %d responses unclosed (each holds a connection; the demo closed them).\n", r.strat.name, r.unclosed)
		}
		if r.dropped > 0 {
			fmt.Fprintf(&table, "%s: %d arrivals dropped, %d calls already in flight.\n", r.strat.name, r.dropped, maxInFlight)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, table.String())

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	tablePath := filepath.Join(o.out, "table.txt")
	if err := os.WriteFile(tablePath, []byte(table.String()), 0o644); err != nil {
		return err
	}
	bucket := max(50*time.Millisecond, (sched.total() / 100).Round(10*time.Millisecond))
	title := fmt.Sprintf("rebound demo: %.0f calls/s per strategy, %s, %d cores", o.cfg.rate, runtime.Version(), runtime.NumCPU())
	paths, err := writeChart(o.out, sched, buildSeries(results, bucket, o.cfg.rate), title)
	if err != nil {
		return err
	}
	hash, err := sourceHash()
	if err != nil {
		return err
	}
	srcPath := filepath.Join(o.out, sourceFile)
	if err := os.WriteFile(srcPath, []byte(sourceLine(hash)), 0o644); err != nil {
		return err
	}
	paths = append(paths, srcPath)
	fmt.Fprintf(w, "\nchart: %s\n", strings.Join(append(paths, tablePath), "  "))
	return nil
}
