package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// row is one line of the table: one strategy during one phase (or the
// whole run, phase "all"). Calls belong to the phase in which they began;
// server attempts and connections to the phase in which they arrived.
type row struct {
	phase, strategy string
	calls, ok       int
	attempts        int
	perSec          float64 // server attempts per second of the phase
	p50, p99        time.Duration
	// recovery is the time from the end of the outage to the first call
	// that succeeded after it; set only on the outage row. -1: none did.
	recovery    time.Duration
	hasRecovery bool
	dups        int // POSTs whose effect ran more than once
	early       int // attempts while a Retry-After was running
	earlyRetry  int // of which repeated the call the hint was sent to
	conns       int // TCP connections the client opened
}

// summarize turns the results into rows, phase by phase (strategies side
// by side within a phase), then the whole run.
func summarize(sched schedule, results []*result) []row {
	var rows []row
	out := sched.index(outage)
	for i, p := range sched {
		for _, r := range results {
			rw := phaseRow(sched, r, i)
			rw.phase = p.name
			if i == out {
				rw.hasRecovery = true
				rw.recovery = firstSuccessAfter(r.calls, sched.start(i)+p.dur)
			}
			rows = append(rows, rw)
		}
	}
	for _, r := range results {
		rw := phaseRow(sched, r, -1)
		rw.phase = "all"
		rows = append(rows, rw)
	}
	return rows
}

// phaseRow measures r over phase i, or over the whole run when i < 0.
func phaseRow(sched schedule, r *result, i int) row {
	rw := row{strategy: r.strat.name}
	in := func(at time.Duration) bool { return i < 0 || sched.at(at) == i }
	var lat []time.Duration
	for _, c := range r.calls {
		if !c.sent || !in(c.start) {
			continue
		}
		rw.calls++
		if c.ok {
			rw.ok++
		}
		lat = append(lat, c.end-c.start)
	}
	rw.p50, rw.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	for j, c := range r.counts {
		if i < 0 || j == i {
			rw.attempts += c.attempts
			rw.early += c.early
			rw.earlyRetry += c.earlyRetries
			rw.dups += r.dups[j]
		}
	}
	for _, d := range r.dials {
		if in(d) {
			rw.conns++
		}
	}
	span := sched.total()
	if i >= 0 {
		span = sched[i].dur
	}
	rw.perSec = float64(rw.attempts) / span.Seconds()
	return rw
}

// firstSuccessAfter returns how long after offset t the first call ended
// successfully, or -1 if none did.
func firstSuccessAfter(calls []callRec, t time.Duration) time.Duration {
	best := time.Duration(-1)
	for _, c := range calls {
		if c.sent && c.ok && c.end >= t && (best < 0 || c.end-t < best) {
			best = c.end - t
		}
	}
	return best
}

// percentile returns the q-th quantile of ds by nearest rank (0 for none).
// It sorts ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	k := int(q*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(k, len(ds)-1))]
}

// tableHeader and the widths of writeTable's columns.
var tableHeader = []string{"phase", "strategy", "calls", "ok %", "attempts", "att/s", "p50", "p99", "recovery", "dup POST", "RA early", "conns"}

// writeTable prints the rows as one aligned table, a blank line between
// phases, and a legend.
func writeTable(w io.Writer, rows []row) {
	cells := [][]string{tableHeader}
	var groups []int // index in cells where a new phase starts
	for k, r := range rows {
		if k > 0 && rows[k-1].phase != r.phase {
			groups = append(groups, len(cells))
		}
		ok := "-"
		if r.calls > 0 {
			ok = fmt.Sprintf("%.1f", 100*float64(r.ok)/float64(r.calls))
		}
		rec := ""
		if r.hasRecovery {
			rec = "never"
			if r.recovery >= 0 {
				rec = fmtDur(r.recovery)
			}
		}
		ra := fmt.Sprint(r.early)
		if r.earlyRetry > 0 {
			ra = fmt.Sprintf("%d (%d)", r.early, r.earlyRetry)
		}
		cells = append(cells, []string{
			r.phase, r.strategy, fmt.Sprint(r.calls), ok, fmt.Sprint(r.attempts),
			fmt.Sprintf("%.1f", r.perSec), fmtDur(r.p50), fmtDur(r.p99), rec,
			fmt.Sprint(r.dups), ra, fmt.Sprint(r.conns),
		})
	}
	width := make([]int, len(tableHeader))
	for _, c := range cells {
		for j, s := range c {
			width[j] = max(width[j], len([]rune(s)))
		}
	}
	for k, c := range cells {
		if slices.Contains(groups, k) {
			fmt.Fprintln(w)
		}
		var b strings.Builder
		for j, s := range c {
			pad := strings.Repeat(" ", width[j]-len([]rune(s)))
			if j < 2 {
				b.WriteString(s + pad) // text columns to the left
			} else {
				b.WriteString(pad + s)
			}
			if j < len(c)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprint(w, legend)
}

const legend = `
calls: calls begun in the phase (open loop, fixed rate). ok %: of those, the share that got a 200 within the deadline.
attempts, att/s: requests that reached the server during the phase. p50/p99: call latency, failures included.
recovery: from the end of the outage to the first call that succeeded. dup POST: POSTs whose effect the server ran twice
or more (without -dedup it runs every POST it receives: the keys are the caller's, the server ignores them). RA early: attempts that
reached the server while a Retry-After it had sent was still running, and in brackets those that repeated the very call
the hint was sent to. conns: TCP connections the client opened.
`

// fmtDur prints a latency compactly: µs, ms or s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
