package admission_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/transport"
)

// The simulation of issue 19's property 9: admission's learned pace never
// collapses. The real retry loop (transport.New with the zero Config, so
// admission with its defaults) sends to in-memory limiter models
// (sim_limiter_test.go) in virtual time (testing/synctest), driven by
// closed-loop workers or by open-loop arrivals above the limit, every call
// with a 10 s deadline. Each cell measures goodput, the admitted requests
// per virtual second as a fraction of the limit, over the whole run and
// over every window of 10 s after the first (50 s at 1 r/s, so that a
// window holds 50 turns); and after the run, that every
// admission state is back to idle.

const (
	simWorkers  = 20               // closed-loop workers
	simOverload = 1.5              // open-loop arrivals, times the limit
	simDeadline = 10 * time.Second // every call's deadline
	// simThink is how long a closed-loop worker waits after a failed call
	// before its next one: a refusal by admission takes no virtual time,
	// and a worker retrying it at once would stop the virtual clock.
	simThink = time.Second
	// simCollapse: a window after the first bucket below this fraction of the
	// limit is a collapse.
	simCollapse = 0.5
)

// simRates are the limits simulated, requests per second.
var simRates = []float64{1, 10, 50, 200, 1000}

// simDuration is the virtual length of a cell of rate r: long enough for
// a few hundred turns at the lowest rates, short enough to keep the real
// time of the highest ones reasonable (19,100 virtual seconds over the 50
// cells, about a minute of CPU with -race). With -short, a fifth of it, at
// least two buckets; REBOUND_SIM_SCALE=n multiplies it by n (a longer
// measure: REBOUND_SIM_SCALE=5 is 95,500 virtual seconds).
func simDuration(r float64, short bool) time.Duration {
	d := map[float64]time.Duration{1: 1200, 10: 500, 50: 150, 200: 40, 1000: 20}[r] * time.Second
	if short {
		d = max(d/5, 2*simBucket)
	}
	if n, err := strconv.Atoi(os.Getenv("REBOUND_SIM_SCALE")); err == nil && n > 0 {
		d *= time.Duration(n)
	}
	return d
}

// simTarget is issue 19's goodput target for each kind, as a fraction of
// the limit: 80 % with no burst, 90 % with a burst of 5 or more, 95 % of an
// announced quota. A bare fixed window is a burst of the whole window.
var simTarget = map[limiterKind]float64{
	tokenHint:     0.90,
	tokenBare:     0.90,
	gcra:          0.80,
	windowHeaders: 0.95,
	windowBare:    0.90,
}

type simCell struct {
	kind limiterKind
	open bool // open-loop arrivals, else closed-loop workers
	rate float64
	dur  time.Duration
}

func (c simCell) String() string {
	loop := "closed"
	if c.open {
		loop = "open"
	}
	return fmt.Sprintf("%s/%s/%g", strings.ReplaceAll(c.kind.String(), " ", "_"), loop, c.rate)
}

// simResult is what one cell measured.
type simResult struct {
	cell simCell

	admitted, refused []int // the limiter's counts per simBucket

	calls, ok   int            // calls made; calls that ended in a 200
	held        map[string]int // calls admission refused, by limit word
	otherFailed int            // calls that failed otherwise (the limiter's refusal handed back)

	after simState // admission's keys once every call returned
	later simState // and 70 s later
	probe int      // the status of one call after the run
}

func (r *simResult) goodput() float64 {
	n := 0
	for _, a := range r.admitted {
		n += a
	}
	return float64(n) / (r.cell.rate * r.cell.dur.Seconds())
}

// span is the number of buckets goodput is judged over for a collapse:
// one (10 s), or as many as hold 50 turns of the limit at low rates (five
// at 1 r/s), so that a window is not judged on a handful of turns.
func (r *simResult) span() int {
	return max(1, int(math.Ceil(50/r.cell.rate/simBucket.Seconds())))
}

// minWindow returns the lowest goodput of a window of span buckets after
// the first bucket, as a fraction of the limit, and the window's first
// bucket.
func (r *simResult) minWindow() (float64, int) {
	n := r.span()
	lo, at := math.Inf(1), -1
	for i := 1; i+n <= len(r.admitted); i++ {
		sum := 0
		for _, a := range r.admitted[i : i+n] {
			sum += a
		}
		if g := float64(sum) / (r.cell.rate * simBucket.Seconds() * float64(n)); g < lo {
			lo, at = g, i
		}
	}
	return lo, at
}

// refusedShare is the share of attempts the limiter refused.
func (r *simResult) refusedShare() float64 {
	var a, f int
	for i := range r.admitted {
		a += r.admitted[i]
		f += r.refused[i]
	}
	return float64(f) / float64(max(a+f, 1))
}

// load is the attempts the limiter saw per second, times the limit.
func (r *simResult) load() float64 {
	var n int
	for i := range r.admitted {
		n += r.admitted[i] + r.refused[i]
	}
	return float64(n) / (r.cell.rate * r.cell.dur.Seconds())
}

func (r *simResult) heldTotal() int {
	n := 0
	for _, v := range r.held {
		n += v
	}
	return n
}

// simFloor is the least whole-run goodput asserted for each kind, as a
// fraction of the limit: what holds in every cell of the kind on main
// today, with a margin. Issue 19's targets are higher (80 % with no burst,
// 90 % with a burst of 5 or more, 95 % of an announced quota); the table
// shows every cell beside them, and the report of the simulation names the
// cause of each cell below its target. Raise a floor when admission
// improves.
var simFloor = map[limiterKind]float64{
	tokenHint:     0.85,
	tokenBare:     0.45,
	gcra:          0.55,
	windowHeaders: 0.90,
	windowBare:    0.25,
}

// simKnownCollapse returns why a cell is known to collapse (a window
// below simCollapse of the limit), or "". Such a cell is held only to
// simFloorCollapsed in every bucket: never a run that stops, or refuses
// everything. Remove an entry when admission no longer collapses there.
func simKnownCollapse(c simCell) string {
	if c.kind == windowBare && c.rate >= 1000 {
		return "the first throttle makes the key's state when the window is already spent, so nothing admitted was measured: the first cut starts from what was sent in the last 50 ms (about 20/s), and a cut every cutRound while the window stays spent takes it to about 5/s; CUBIC then needs about 16 s to regain 1,000/s"
	}
	return ""
}

// simFloorCollapsed is the least goodput of any window after the
// first, as a fraction of the limit, in a cell known to collapse.
const simFloorCollapsed = 0.1

func TestSimulatedPaceNeverCollapses(t *testing.T) {
	short := testing.Short()
	var cells []simCell
	for _, kind := range []limiterKind{tokenHint, tokenBare, gcra, windowHeaders, windowBare} {
		for _, open := range []bool{false, true} {
			for _, r := range simRates {
				cells = append(cells, simCell{kind: kind, open: open, rate: r, dur: simDuration(r, short)})
			}
		}
	}
	results := make([]*simResult, len(cells))
	t.Run("cells", func(t *testing.T) {
		for i, c := range cells {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					results[i] = runCell(t, c, nil)
				})
				checkCell(t, results[i])
			})
		}
	})
	var virtual time.Duration
	below := 0
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-22s %-6s %5s %5s | %8s %7s %8s %6s | %7s %7s %6s %6s %6s %6s | %s\n",
		"limiter", "loop", "r/s", "secs", "goodput", "minwin", "refused", "load",
		"calls", "ok", "held:h", "held:q", "held:p", "failed", "after: queued inflight paused, 70 s later paused, probe")
	for _, r := range results {
		if r == nil {
			continue
		}
		c := r.cell
		virtual += c.dur
		loop := "closed"
		if c.open {
			loop = "open"
		}
		lo, _ := r.minWindow()
		mark := " "
		if r.goodput() < simTarget[c.kind] {
			mark, below = "*", below+1
		}
		fmt.Fprintf(&b, "%-22s %-6s %5g %5.0f | %6.1f%%%s %6.1f%% %7.2f%% %5.2fx | %7d %7d %6d %6d %6d %6d | %d %d %d, %d, %d\n",
			c.kind, loop, c.rate, c.dur.Seconds(), 100*r.goodput(), mark, 100*lo, 100*r.refusedShare(), r.load(),
			r.calls, r.ok, r.held[admission.LimitHint.String()], r.held[admission.LimitQuota.String()], r.held[admission.LimitPace.String()], r.otherFailed,
			r.after.Queued, r.after.Inflight, r.after.Paused, r.later.Paused, r.probe)
	}
	fmt.Fprintf(&b, "%d cells, %.0f virtual seconds; * %d cells below issue 19's target (90 %% with a burst, 80 %% without, 95 %% of a quota)",
		len(results), virtual.Seconds(), below)
	t.Log(b.String())
}

// checkCell asserts what every cell must show.
func checkCell(t *testing.T, r *simResult) {
	t.Helper()
	if r == nil {
		t.Fatal("the cell did not run")
	}
	floor := simCollapse
	if why := simKnownCollapse(r.cell); why != "" {
		t.Logf("known collapse: %s", why)
		floor = simFloorCollapsed
	}
	if lo, at := r.minWindow(); lo < floor {
		t.Errorf("collapse: %.0f %% of the limit in [%v, %v) (admitted per 10 s: %v)",
			100*lo, time.Duration(at)*simBucket, time.Duration(at+r.span())*simBucket, r.admitted)
	}
	if g := r.goodput(); g < simFloor[r.cell.kind] {
		t.Errorf("goodput %.1f %% of the limit, want ≥ %.0f %%", 100*g, 100*simFloor[r.cell.kind])
	}
	if r.after.Queued != 0 || r.after.Inflight != 0 {
		t.Errorf("admission not idle once every call returned: %+v", r.after)
	}
	if r.later.Queued != 0 || r.later.Inflight != 0 || r.later.Paused != 0 {
		t.Errorf("admission not idle 70 s after the run: %+v", r.later)
	}
	if r.probe != http.StatusOK {
		t.Errorf("a call after the run got %d, want 200", r.probe)
	}
}

// runCell runs one cell in the current synctest bubble.
// onStart, when not nil, is called with the limiter and the admission
// before the first call.
func runCell(t *testing.T, c simCell, onStart func(*limiter, *transport.Transport)) *simResult {
	buckets := int(c.dur / simBucket)
	lim := newLimiter(c.kind, c.rate, buckets)
	tr := transport.New(lim, transport.Config{})
	res := &simResult{cell: c, held: make(map[string]int)}
	if onStart != nil {
		onStart(lim, tr)
	}
	var mu sync.Mutex
	call := func() bool {
		ok, limit := simCall(tr)
		mu.Lock()
		defer mu.Unlock()
		res.calls++
		switch {
		case ok:
			res.ok++
		case limit != "":
			res.held[limit]++
		default:
			res.otherFailed++
		}
		return ok
	}
	end := lim.start.Add(c.dur)
	var wg sync.WaitGroup
	if c.open {
		rng := rand.New(rand.NewPCG(uint64(c.kind), uint64(c.rate)))
		for {
			time.Sleep(time.Duration(rng.ExpFloat64() / (simOverload * c.rate) * float64(time.Second)))
			if !time.Now().Before(end) {
				break
			}
			wg.Go(func() { call() })
		}
	} else {
		for range simWorkers {
			wg.Go(func() {
				for time.Now().Before(end) {
					if !call() {
						time.Sleep(simThink)
					}
				}
			})
		}
	}
	wg.Wait()
	res.admitted, res.refused = lim.counts(buckets)
	res.after = simStateOf(tr)
	// Past any pause (a spent quota's lasts to its reset) and the
	// limiter's windows: no key is paused, and one call goes through.
	time.Sleep(transport.DefaultMaxRetryAfter + 10*time.Second)
	res.later = simStateOf(tr)
	ctx, cancel := context.WithTimeout(context.Background(), simDeadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/v1/items", nil)
	if resp, err := tr.RoundTrip(req); err == nil {
		res.probe = resp.StatusCode
		resp.Body.Close()
	}
	return res
}

// simCall makes one call with simDeadline. It reports whether it ended in
// a 200 and, when admission refused it (its first attempt or a retry), the
// word of what limited it.
func simCall(tr *transport.Transport) (ok bool, limit string) {
	ctx, cancel := context.WithTimeout(context.Background(), simDeadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/v1/items", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if errors.Is(err, transport.ErrHeld) {
			return false, admission.LimitOf(err).String()
		}
		return false, ""
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	if _, stop, found := transport.Outcome(resp); found && errors.Is(stop, transport.ErrHeld) {
		return false, admission.LimitOf(stop).String()
	}
	return false, ""
}

// simState is what the simulation reads of a transport's admission after
// a run, through the operator's snapshot (Transport.Admission): how many
// keys have a state, and, summed over them, the turns queued and in
// flight, the keys still paused and those with a learned pace. All zero
// but States is the idle state a run must return to.
type simState struct {
	States, Queued, Inflight, Paused, Paced int
}

func simStateOf(tr *transport.Transport) simState {
	var s simState
	for _, h := range tr.Admission() {
		for _, k := range h.Keys {
			s.States++
			s.Queued += k.Queued
			s.Inflight += k.InFlight
			if k.PausedFor > 0 || h.PausedFor > 0 {
				s.Paused++
			}
			if k.Pace > 0 {
				s.Paced++
			}
		}
	}
	return s
}
