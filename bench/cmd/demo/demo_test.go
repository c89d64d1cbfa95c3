package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReplayShort runs the whole demo, every strategy against its own
// server and toxiproxy, with every phase cut to 15 % of its length (7 s of
// traffic), and checks what holds by construction of the script and of
// each strategy, so that the demo keeps measuring what it says. The
// machine may be slow (the race detector, other jobs): nothing asserted
// depends on how long a call takes, only on what each strategy does.
func TestReplayShort(t *testing.T) {
	const scale, rate = 0.15, 40
	sched, err := newSchedule(scale)
	require.NoError(t, err)
	o := options{
		cfg: config{scale: scale, rate: rate, postEvery: 3, timeout: 5 * time.Second, seed: 7, strategies: strategies},
		out: t.TempDir(),
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := run(ctx, o.cfg, sched, &out)
	require.NoError(t, err)
	t.Logf("progress:\n%s", out.String())
	require.Len(t, results, len(strategies))

	rows := summarize(sched, results)
	var table strings.Builder
	writeTable(&table, rows)
	t.Logf("table:\n%s", table.String())
	get := func(phase, strat string) row {
		for _, r := range rows {
			if r.phase == phase && r.strategy == strat {
				return r
			}
		}
		t.Fatalf("no row %s/%s", phase, strat)
		return row{}
	}
	byName := map[string]*result{}
	// The most attempts of one call that can reach the server: the
	// strategy's own. (net/http itself may replay a GET or a keyed POST
	// whose reused connection broke, which only the resets phase does:
	// the cap is checked on the calls that ended before it.)
	maxAttempts := map[string]int{"plain": 1, "naive": 4, "retryablehttp": 5, "failsafe": 3, "rebound": 4}
	resetsStart := sched.start(sched.index(resets))
	want := int(rate * sched.total().Seconds())
	outStart, outEnd := sched.start(sched.index(outage)), sched.start(sched.index(outage)+1)
	for _, r := range results {
		name := r.strat.name
		byName[name] = r
		all := get("all", name)
		assert.Zero(t, r.dropped, "%s: dropped arrivals", name)
		assert.Equal(t, want, all.calls, "%s: every scheduled call is made", name)
		for _, c := range r.calls {
			require.True(t, c.sent && c.end >= c.start, "%s: a call was not recorded whole: %+v", name, c)
		}
		// The outage answers every request with a 503, whoever sends it.
		assert.Zero(t, r.counts[sched.index(outage)].served, "%s: a 200 during the outage", name)
		for i, c := range r.calls {
			if n := r.perCall[fmt.Sprint(i)]; c.end < resetsStart {
				require.LessOrEqual(t, n, maxAttempts[name], "%s: call %d reached the server %d times", name, i, n)
			}
		}
		assert.LessOrEqual(t, all.dups, all.calls/3+1, "%s: more duplicated POSTs than POSTs", name)
	}

	// Every phase has a row per strategy, plus the totals; the outage row
	// carries the recovery.
	assert.Len(t, rows, (len(sched)+1)*len(strategies))
	assert.True(t, get("outage", "plain").hasRecovery)
	assert.False(t, get("ratelimit", "plain").hasRecovery)
	for _, p := range sched {
		assert.Contains(t, out.String(), p.name+" ", "a progress line per phase")
		assert.Contains(t, table.String(), p.name+" ")
	}

	// The chart: a PNG of the size asked for, and an SVG.
	paths, err := writeChart(o.out, sched, buildSeries(results, 100*time.Millisecond, rate), "test")
	require.NoError(t, err)
	require.Len(t, paths, 2)
	f, err := os.Open(filepath.Join(o.out, "demo.png"))
	require.NoError(t, err)
	defer f.Close()
	img, err := png.DecodeConfig(f)
	require.NoError(t, err)
	assert.Equal(t, 1210, img.Width)
	assert.Equal(t, 770, img.Height)
	svg, err := os.ReadFile(filepath.Join(o.out, "demo.svg"))
	require.NoError(t, err)
	assert.Contains(t, string(svg), "<svg")

	// Timing-independent: a strategy that honours Retry-After never
	// repeats a call before the hint it got, however slow the machine.
	for _, name := range []string{"plain", "retryablehttp", "failsafe", "rebound"} {
		assert.Zero(t, get("all", name).earlyRetry, "%s repeated a call before its Retry-After", name)
	}
	for i, c := range byName["plain"].calls {
		if c.start >= outStart && c.end < outEnd {
			assert.Equal(t, 1, byName["plain"].perCall[fmt.Sprint(i)], "plain: call %d", i)
		}
	}

	// The rest needs a machine that answers at once during the phase
	// concerned: on a starved one (the race detector and other jobs on 2
	// cores), calls sit for seconds, reach the server in a later phase,
	// and meet their deadline instead. Each check runs only when the
	// plain client's calls of its phase were quick.
	quick := func(phase string) bool {
		var lat []time.Duration
		for _, c := range byName["plain"].calls {
			if sched[sched.at(c.start)].name == phase {
				lat = append(lat, c.end-c.start)
			}
		}
		if p90 := percentile(lat, 0.9); p90 > 200*time.Millisecond {
			t.Logf("the machine was too slow during %s (plain p90 %v): its timing checks are skipped", phase, p90)
			return false
		}
		return true
	}

	// The naive loop repeats a failure at once: a call begun during the
	// outage that failed before its deadline made its 4 attempts, every
	// one answered (no phase but resets loses a request).
	if quick("outage") {
		naiveOutage := 0
		for i, c := range byName["naive"].calls {
			if c.start >= outStart && c.end < outEnd && !c.ok && c.end-c.start < o.cfg.timeout {
				naiveOutage++
				assert.Equal(t, 4, byName["naive"].perCall[fmt.Sprint(i)], "naive: call %d", i)
			}
		}
		assert.Positive(t, naiveOutage, "naive: no call both began and failed in the outage")
	}

	// The rate limiter sends Retry-After: 1 to the calls over its bucket;
	// the naive loop repeats them at once.
	if quick("ratelimit") {
		require.GreaterOrEqual(t, byName["naive"].hinted, 5, "the rate limiter sent few hints")
		assert.Positive(t, get("all", "naive").earlyRetry, "naive ignores Retry-After")
	}

	// Resets: 30 % of connections, one request per connection, for
	// 1.2 s; at 40 calls/s a plain client that met no reset at all has
	// odds of 0.7^48 < 1e-7. Only a reset fails a plain call with an
	// error that is not its deadline.
	if quick("resets") {
		netErrs := 0
		for _, c := range byName["plain"].calls {
			if c.netErr {
				netErrs++
			}
		}
		assert.Positive(t, netErrs, "plain: no reset met")
	}
	assert.Zero(t, get("healthy", "plain").dups+get("outage", "plain").dups+get("ratelimit", "plain").dups)
}

// TestCommittedChartIsCurrent fails when the chart in docs/ was drawn by
// other code than the demo's sources on this branch: after a change to
// the demo, run `make demo-docs` and commit docs/demo.png, demo.svg and
// demo.src.
func TestCommittedChartIsCurrent(t *testing.T) {
	hash, err := sourceHash()
	require.NoError(t, err)
	docs := filepath.Join("..", "..", "..", "docs")
	got, err := os.ReadFile(filepath.Join(docs, sourceFile))
	require.NoError(t, err, "docs/%s is missing: run make demo-docs", sourceFile)
	if string(got) != sourceLine(hash) {
		t.Fatalf("docs/demo.png was drawn by other demo code (docs/%s: %q; the sources hash to %s): run make demo-docs and commit docs/demo.*", sourceFile, strings.TrimSpace(string(got)), hash)
	}
	for _, name := range []string{"demo.png", "demo.svg"} {
		st, err := os.Stat(filepath.Join(docs, name))
		require.NoError(t, err)
		assert.Positive(t, st.Size(), name)
	}
}

// The hash covers the demo's sources and not its tests.
func TestSourceHash(t *testing.T) {
	a, err := sourceHash()
	require.NoError(t, err)
	b, err := sourceHash()
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Len(t, a, 64)
	names, err := fs.Glob(sources, "*_test.go")
	require.NoError(t, err)
	assert.NotEmpty(t, names, "the tests are embedded, and skipped by the hash")
}
