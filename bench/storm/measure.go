package storm

import (
	"time"
)

// Window is the width of the windows over which recovery is judged.
const Window = 500 * time.Millisecond

// Result is what one cell measured, made by Run. The zero value
// describes no run.
type Result struct {
	Cell Cell
	// Ran is the virtual time the cell ran.
	Ran time.Duration
	// Before is the share of calls that succeeded among those that
	// started 2 s after the start and ended before the trigger.
	Before float64
	// Recovery is the time from the trigger's removal to the start of
	// the first Window from which every Window of calls, for Stable,
	// succeeded at least RecoveredShare as often as Before (calls are
	// placed by their start). Zero when the trigger left no trace.
	// Meaningless when Metastable.
	Recovery time.Duration
	// Metastable reports that the cell had not recovered Patience after
	// the trigger's removal.
	Metastable bool
	// AmpDuring and AmpAfter are the server's attempts per call started
	// while the trigger lasted and in the 10 s after its removal.
	AmpDuring, AmpAfter float64
	// Success is the share of all calls that succeeded.
	Success float64
	// Calls and Attempts count all calls started and all attempts the
	// server received.
	Calls, Attempts int64
	// Local counts the calls that failed without sending an attempt
	// (refused by the process's own breaker, budget or admission), and
	// LocalAfter those of them that started after the trigger's removal.
	Local, LocalAfter int64
	// Served counts the requests the server served, Wasted those of
	// them whose client had given up.
	Served, Wasted int64
	// ProbeRate is the fleet's attempts per second from processes whose
	// last call was refused locally (an open circuit, an empty budget),
	// averaged over the ticks in which any process was in that state;
	// ProbePeak is the most such attempts in one second.
	ProbeRate, ProbePeak float64
	// OpenPeak is the most processes refusing locally at once.
	OpenPeak int64
	// AmpWindowMax is the highest fleet-wide attempts per call over any
	// run of whole seconds holding at least 1,000 calls (by their start;
	// the shortest such run from each second).
	AmpWindowMax float64
	// AmpClientMax is the highest attempts per call of one process over
	// the whole cell, among the AmpClients processes with at least 1,000
	// calls.
	AmpClientMax float64
	AmpClients   int
	// Goodput is the successful calls per second, by their end, second
	// by second from the start; Offered the calls started.
	Goodput, Offered []float64
}

// ticks converts a duration into a number of Ticks.
func ticks(d time.Duration) int { return int(d / Tick) }

// share returns the share of calls started in b[i:j] that succeeded,
// and whether any started.
func share(b []bucket, i, j int) (float64, bool) {
	var started, ok int64
	for k := max(i, 0); k < min(j, len(b)); k++ {
		started += b[k].started
		ok += b[k].okByStart
	}
	if started == 0 {
		return 0, false
	}
	return float64(ok) / float64(started), true
}

// beforeShare is the share of the calls that succeeded among those that
// started 2 s after the start and ended before the trigger.
func beforeShare(b []bucket, c Cell) (float64, bool) {
	return share(b, ticks(2*time.Second), ticks(c.Warmup-c.Deadline))
}

// recovery finds the recovery time in b[:last] (the calls of later
// ticks may still be running); ok is false when it cannot be found there.
func recovery(b []bucket, c Cell, last int) (time.Duration, bool) {
	before, any := beforeShare(b, c)
	if !any {
		return 0, false
	}
	last = min(last, len(b))
	limit := ticks(c.Warmup + c.TriggerFor + c.Patience)
	w, stable := ticks(Window), ticks(c.Stable)
	removal := ticks(c.Warmup + c.TriggerFor)
	run := 0 // windows in a row found good, ending at i
	for i := removal; i+w <= last; i += w {
		if s, any := share(b, i, i+w); !any || s >= RecoveredShare*before {
			run++
		} else {
			run = 0
		}
		from := i - (run-1)*w
		if run == 0 {
			from = i + w
		}
		if from > limit {
			return 0, false
		}
		if run*w >= stable {
			return time.Duration(from-removal) * Tick, true
		}
	}
	return 0, false
}

// analyse turns a cell's buckets into its Result.
func analyse(c Cell, b []bucket, ran time.Duration) *Result {
	r := &Result{Cell: c, Ran: ran}
	r.Before, _ = beforeShare(b, c)
	last := min(len(b), ticks(ran))
	if rec, ok := recovery(b, c, last); ok {
		r.Recovery = rec
	} else {
		r.Metastable = true
	}
	trig, removal := ticks(c.Warmup), ticks(c.Warmup+c.TriggerFor)
	amp := func(i, j int) float64 {
		var calls, attempts int64
		for k := i; k < min(j, len(b)); k++ {
			calls += b[k].started
			attempts += b[k].attempts
		}
		if calls == 0 {
			return 0
		}
		return float64(attempts) / float64(calls)
	}
	r.AmpDuring = amp(trig, removal)
	r.AmpAfter = amp(removal, removal+ticks(10*time.Second))
	var openTicks, probes int64
	perSec := ticks(time.Second)
	secs := (last + perSec - 1) / perSec
	r.Goodput, r.Offered = make([]float64, secs), make([]float64, secs)
	window := int64(0)
	for k := range last {
		x := b[k]
		r.Calls += x.started
		r.Attempts += x.attempts
		r.Served += x.served
		r.Wasted += x.wasted
		r.Local += x.local
		if k >= removal {
			r.LocalAfter += x.local
		}
		r.Goodput[k/perSec] += float64(x.okByEnd)
		r.Offered[k/perSec] += float64(x.started)
		if x.openMax > 0 {
			openTicks++
			probes += x.probes
		}
		r.OpenPeak = max(r.OpenPeak, x.openMax)
		window += x.probes
		if k >= perSec {
			window -= b[k-perSec].probes
		}
		r.ProbePeak = max(r.ProbePeak, float64(window))
	}
	// Fleet-wide windows of ≥ 1,000 calls, from each second.
	for i := 0; i < last; i += perSec {
		var calls, attempts int64
		for k := i; k < last; k++ {
			calls += b[k].started
			attempts += b[k].attempts
			if calls >= 1000 && (k+1-i)%perSec == 0 {
				r.AmpWindowMax = max(r.AmpWindowMax, float64(attempts)/float64(calls))
				break
			}
		}
	}
	if r.Calls > 0 {
		var ok int64
		for k := range last {
			ok += b[k].okByStart
		}
		r.Success = float64(ok) / float64(r.Calls)
	}
	if openTicks > 0 {
		r.ProbeRate = float64(probes) / (float64(openTicks) * Tick.Seconds())
	}
	return r
}
