package breaker_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/classify"
)

// feed reports one outcome per letter of seq to b: H healthy, U unhealthy,
// N neutral. It fails the test if b refuses an attempt.
func feed(t *testing.T, b *breaker.Breaker, seq string) {
	t.Helper()
	for i, c := range seq {
		done, err := b.Allow()
		if err != nil {
			t.Fatalf("outcome %d of %q: Allow: %v", i, seq, err)
		}
		switch c {
		case 'H':
			done(classify.Healthy)
		case 'U':
			done(classify.Unhealthy)
		case 'N':
			done(classify.Neutral)
		}
	}
}

// openError returns the *OpenError of b.Allow, failing if it allows.
func openError(t *testing.T, b *breaker.Breaker) *breaker.OpenError {
	t.Helper()
	done, err := b.Allow()
	if err == nil {
		done(classify.Neutral)
		t.Fatalf("Allow passed in state %v, want a refusal", b.State())
	}
	var oe *breaker.OpenError
	if !errors.As(err, &oe) {
		t.Fatalf("Allow: %T %v, want *OpenError", err, err)
	}
	return oe
}

func TestTripRules(t *testing.T) {
	tests := []struct {
		name   string
		cfg    breaker.Config
		seq    string
		want   breaker.State
		reason string
	}{
		{name: "five consecutive failures trip a quiet host", seq: "UUUUU", want: breaker.Open, reason: "5 consecutive failures"},
		{name: "four do not", seq: "UUUU", want: breaker.Closed},
		{name: "a success breaks the run", seq: "UUUUHUUUU", want: breaker.Closed},
		{name: "neutral neither counts nor breaks the run", seq: "UUNNUUNU", want: breaker.Open, reason: "5 consecutive failures"},
		{name: "a busy host ignores a run of five", seq: strings.Repeat("H", 20) + "UUUUU", want: breaker.Closed},
		{name: "half of twenty trips on the rate", seq: strings.Repeat("HU", 10), want: breaker.Open, reason: "failure rate 50% of 20 calls"},
		{name: "a third does not", seq: strings.Repeat("HHU", 20), want: breaker.Closed},
		{name: "custom rate over more calls", seq: strings.Repeat("H", 15) + strings.Repeat("U", 23),
			cfg: breaker.Config{ConsecutiveFailures: -1, FailureRate: 0.6}, want: breaker.Open, reason: "failure rate 60% of 38 calls"},
		{name: "consecutive rule disabled", cfg: breaker.Config{ConsecutiveFailures: -1}, seq: "UUUUUUUUUU", want: breaker.Closed},
		{name: "custom thresholds", cfg: breaker.Config{MinCalls: 4, FailureRate: 0.75}, seq: "HUUU", want: breaker.Open, reason: "failure rate 75% of 4 calls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got changes
				tt.cfg.OnStateChange = got.add
				b := breaker.New("api", tt.cfg)
				feed(t, b, tt.seq)
				if b.State() != tt.want {
					t.Fatalf("state %v after %q, want %v (snapshot %+v)", b.State(), tt.seq, tt.want, b.Snapshot())
				}
				chs := got.list()
				if tt.want == breaker.Closed {
					if len(chs) != 0 {
						t.Fatalf("changes %+v, want none", chs)
					}
					return
				}
				if len(chs) != 1 || chs[0].Reason != tt.reason || chs[0].From != breaker.Closed || chs[0].To != breaker.Open || chs[0].Host != "api" {
					t.Fatalf("changes %+v, want one closed→open for %q", chs, tt.reason)
				}
			})
		})
	}
}

func TestOpenTimeGrowsAndResets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got changes
		b := breaker.New("api", breaker.Config{Jitter: -1, OnStateChange: got.add})
		feed(t, b, "UUUUU")
		// Each failed probe doubles the open time, up to the 60 s cap.
		for _, want := range []time.Duration{5, 10, 20, 40, 60, 60} {
			want *= time.Second
			if oe := openError(t, b); oe.RetryIn != want || oe.State != breaker.Open {
				t.Fatalf("refusal %+v, want open with RetryIn %v", oe, want)
			}
			time.Sleep(want - time.Nanosecond)
			if oe := openError(t, b); oe.RetryIn != time.Nanosecond {
				t.Fatalf("1ns before the probe: RetryIn %v", oe.RetryIn)
			}
			time.Sleep(time.Nanosecond)
			feed(t, b, "U") // the probe, which fails
			if s := b.Snapshot(); s.State != breaker.Open {
				t.Fatalf("after a failed probe: %+v", s)
			}
		}
		time.Sleep(time.Minute)
		feed(t, b, "H") // a successful probe closes and resets the growth
		if s := b.Snapshot(); s.State != breaker.Closed || s.Trips != 0 {
			t.Fatalf("after a good probe: %+v", s)
		}
		feed(t, b, "UUUUU")
		if oe := openError(t, b); oe.RetryIn != 5*time.Second {
			t.Fatalf("after closing, the next trip opens for %v, want 5s", oe.RetryIn)
		}
		// Every change was reported, in order, with its generation.
		chs := got.list()
		for i, ch := range chs {
			if ch.Generation != uint64(i+2) {
				t.Fatalf("change %d has generation %d", i, ch.Generation)
			}
		}
		last := chs[len(chs)-3:]
		if last[0].Reason != "open time elapsed" || last[1].Reason != "probe succeeded" || last[1].To != breaker.Closed ||
			last[2].To != breaker.Open || last[2].OpenFor != 5*time.Second {
			t.Fatalf("last changes %+v", last)
		}
	})
}

func TestJitterStaysWithinBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got changes
		seen := map[time.Duration]bool{}
		for range 200 {
			b := breaker.New("api", breaker.Config{OnStateChange: got.add})
			feed(t, b, "UUUUU")
			oe := openError(t, b)
			if oe.RetryIn <= 4500*time.Millisecond || oe.RetryIn > 5*time.Second {
				t.Fatalf("open for %v, want in (4.5s, 5s]", oe.RetryIn)
			}
			seen[oe.RetryIn] = true
			// The breaker really stays open that long, and no longer.
			time.Sleep(oe.RetryIn - time.Nanosecond)
			openError(t, b)
			time.Sleep(time.Nanosecond)
			feed(t, b, "H")
		}
		if len(seen) < 100 {
			t.Fatalf("only %d distinct open times in 200 trips: not jittered", len(seen))
		}
		for _, ch := range got.list() {
			if ch.To == breaker.Open && (ch.OpenFor <= 4500*time.Millisecond || ch.OpenFor > 5*time.Second) {
				t.Fatalf("reported OpenFor %v", ch.OpenFor)
			}
		}
	})
}

func TestWindowSlides(t *testing.T) {
	// 19 calls, 10 of them failures and never two in a row, then one more
	// failure after a pause: it trips only while the first 19 are in the
	// 10 s window (ten 1 s buckets).
	tests := []struct {
		name  string
		pause time.Duration
		want  breaker.State
		calls int64
	}{
		{name: "no pause", pause: 0, want: breaker.Open},
		{name: "still in the last bucket", pause: 9*time.Second + 999*time.Millisecond, want: breaker.Open},
		{name: "slid out", pause: 10 * time.Second, want: breaker.Closed, calls: 1},
		{name: "long idle", pause: time.Hour, want: breaker.Closed, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := breaker.New("api", breaker.Config{})
				feed(t, b, strings.Repeat("UH", 9)+"U")
				if s := b.Snapshot(); s.Calls != 19 || s.Failures != 10 || s.State != breaker.Closed {
					t.Fatalf("before the pause: %+v", s)
				}
				time.Sleep(tt.pause)
				feed(t, b, "U")
				s := b.Snapshot()
				if s.State != tt.want || tt.want == breaker.Closed && s.Calls != tt.calls {
					t.Fatalf("after %v: %+v, want %v with %d calls", tt.pause, s, tt.want, tt.calls)
				}
			})
		})
	}
}

func TestHalfOpenAdmitsBoundedProbes(t *testing.T) {
	for _, probes := range []int{1, 3} {
		t.Run(strings.Repeat("probe", probes), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got changes
				b := breaker.New("api", breaker.Config{HalfOpenProbes: probes, OnStateChange: got.add})
				feed(t, b, "UUUUU")
				time.Sleep(5 * time.Second)
				var (
					wg      sync.WaitGroup
					allowed atomic.Int32
					mu      sync.Mutex
					dones   []func(classify.Health)
				)
				for range 50 {
					wg.Go(func() {
						done, err := b.Allow()
						if err != nil {
							if !errors.Is(err, breaker.ErrOpen) {
								t.Errorf("refusal %v", err)
							}
							return
						}
						allowed.Add(1)
						mu.Lock()
						dones = append(dones, done)
						mu.Unlock()
					})
				}
				wg.Wait()
				if n := int(allowed.Load()); n != probes {
					t.Fatalf("%d of 50 concurrent callers probed, want %d", n, probes)
				}
				if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ProbesInFlight != probes {
					t.Fatalf("during the probes: %+v", s)
				}
				if oe := openError(t, b); oe.State != breaker.HalfOpen || oe.RetryIn != 0 {
					t.Fatalf("refusal while probing: %+v", oe)
				}
				dones[0](classify.Healthy)
				if b.State() != breaker.Closed {
					t.Fatalf("a good probe left the breaker %v", b.State())
				}
				for _, done := range dones[1:] {
					done(classify.Unhealthy) // from the half-open generation: ignored
				}
				if b.State() != breaker.Closed {
					t.Fatalf("a stale probe result reopened the breaker")
				}
			})
		})
	}
}

func TestHalfOpenNeverWedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api", breaker.Config{})
		feed(t, b, "UUUUU")
		time.Sleep(5 * time.Second)
		// Probes that say nothing (cancelled by their caller) free the slot,
		// even when reported twice.
		for range 3 {
			done, err := b.Allow()
			if err != nil {
				t.Fatalf("probe refused: %v", err)
			}
			openError(t, b)
			done(classify.Neutral)
			done(classify.Neutral)
			if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ProbesInFlight != 0 {
				t.Fatalf("after a neutral probe: %+v", s)
			}
		}
		feed(t, b, "H")
		if b.State() != breaker.Closed {
			t.Fatalf("state %v after a good probe", b.State())
		}
	})
}

func TestStaleOutcomesAreIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api", breaker.Config{})
		var before []func(classify.Health) // allowed while closed, reported late
		for range 5 {
			done, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, done)
		}
		feed(t, b, "UUUUU")
		before[0](classify.Unhealthy) // a sixth failure, but of the old generation
		if s := b.Snapshot(); s.State != breaker.Open || s.Generation != 2 {
			t.Fatalf("a failure from before the trip changed the open breaker: %+v", s)
		}
		time.Sleep(5 * time.Second)
		probe, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		// Counted in the closed generation, these would make a seventh and
		// later consecutive failures and trip it again, or close it.
		for _, done := range before[1:4] {
			done(classify.Unhealthy)
		}
		before[4](classify.Healthy)
		if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ProbesInFlight != 1 || s.Generation != 3 {
			t.Fatalf("outcomes from the closed generation changed the half-open breaker: %+v", s)
		}
		probe(classify.Healthy)
		if s := b.Snapshot(); s.State != breaker.Closed || s.Calls != 0 || s.Generation != 4 {
			t.Fatalf("after the good probe: %+v", s)
		}
	})
}

func TestNoFalseTripsUnderLoad(t *testing.T) {
	tests := []struct {
		name     string
		failRate float64
		duration time.Duration
		wantOpen bool
	}{
		{name: "10% flaky for 10 minutes never opens", failRate: 0.1, duration: 10 * time.Minute},
		{name: "60% failing opens within the window", failRate: 0.6, duration: 10 * time.Second, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					got     changes
					mu      sync.Mutex
					rng     = newPCG(42)
					run     int // current run of failures, in the order decided
					longest int
					calls   int
				)
				// The base decides failures from one generator in call
				// order, so the sequence of outcomes is fixed by the seed.
				base := stub(func(*http.Request) (*http.Response, error) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					if rng.Float64() < tt.failRate {
						run++
						longest = max(longest, run)
						return &http.Response{StatusCode: 500, Body: http.NoBody}, nil
					}
					run = 0
					return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
				})
				tr := breaker.NewTransport(base, breaker.Config{OnStateChange: got.add})
				start := time.Now()
				var wg sync.WaitGroup
				for range 20 {
					wg.Go(func() {
						req := get(t, context.Background(), "https://api.example.com/")
						for time.Since(start) < tt.duration && got.opens() == 0 {
							if resp, err := tr.RoundTrip(req); err == nil {
								resp.Body.Close()
							}
							time.Sleep(10 * time.Millisecond) // 2,000 calls/s in all
						}
					})
				}
				wg.Wait()
				chs := got.list()
				if !tt.wantOpen {
					if len(chs) != 0 {
						t.Fatalf("breaker changed state on a %v%% flaky host: %+v", tt.failRate*100, chs)
					}
					// The test is only meaningful if the failures had runs that
					// a consecutive-failures rule would have tripped on.
					if longest < 5 {
						t.Fatalf("longest run of failures %d in %d calls: the load did not test the rule", longest, calls)
					}
					t.Logf("%d calls, longest failure run %d, no trip", calls, longest)
					return
				}
				if len(chs) == 0 || chs[0].To != breaker.Open {
					t.Fatalf("no trip in %v at %v%% failures", tt.duration, tt.failRate*100)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Fatalf("opened after %v", d)
				}
				t.Logf("opened after %d calls: %s", calls, chs[0].Reason)
			})
		})
	}
}

// newPCG returns a seeded generator, so a test's random sequence is fixed.
func newPCG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }
