package breaker_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
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

// A trip's reason is in plain words with its counts; the test that
// tripped is in StateChange.DeadHost.
const (
	deadReason     = "10 of the last 10 attempts failed"
	degradedReason = "32 of the last 52 attempts failed"
)

func TestTripRules(t *testing.T) {
	u := func(n int) string { return strings.Repeat("U", n) }
	tests := []struct {
		name   string
		cfg    breaker.Config
		seq    string
		want   breaker.State
		reason string
	}{
		{name: "ten failures trip a fresh host", seq: u(10), want: breaker.Open, reason: deadReason},
		{name: "nine do not", seq: u(9), want: breaker.Closed},
		{name: "a success delays the trip", seq: u(9) + "H" + u(3), want: breaker.Closed},
		{name: "but 17 failures in 18 trip", seq: u(9) + "H" + u(4), want: breaker.Open, reason: "the last 4 attempts failed (13 of the last 14)"},
		{name: "neutral neither counts nor breaks the run", seq: "UUNNUUNUNUUUUNU", want: breaker.Open, reason: deadReason},
		{name: "a healthy host earns credit", seq: strings.Repeat("H", 20) + u(16), want: breaker.Closed},
		{name: "which buys seven failures", seq: strings.Repeat("H", 20) + u(17), want: breaker.Open, reason: "the last 17 attempts failed (17 of the last 37)"},
		{name: "30 % failures never trip", seq: strings.Repeat("HHUHHHUHHU", 300), want: breaker.Closed},
		{name: "40 % do not in 3,000 calls", seq: strings.Repeat("HUHHUHUHHU", 300), want: breaker.Closed},
		{name: "60 % trip the degraded test", seq: strings.Repeat("UUHUUHUHUH", 6)[:52], want: breaker.Open, reason: degradedReason},
		{name: "custom run length", cfg: breaker.Config{MinCalls: 4}, seq: u(4), want: breaker.Open, reason: "4 of the last 4 attempts failed"},
		{name: "custom run length, one short", cfg: breaker.Config{MinCalls: 4}, seq: u(3), want: breaker.Closed},
		{name: "a higher tolerated rate", cfg: breaker.Config{FailureRate: 0.5}, seq: strings.Repeat("UUHUUHUHUH", 30), want: breaker.Closed},
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
				if dead := tt.reason != degradedReason; chs[0].DeadHost != dead {
					t.Fatalf("DeadHost %v, want %v", chs[0].DeadHost, dead)
				}
				oe := openError(t, b)
				if oe.Reason != tt.reason || oe.DeadHost != chs[0].DeadHost || oe.Failed != chs[0].Failed || oe.Attempts != chs[0].Attempts {
					t.Fatalf("refusal %+v does not carry the trip %+v", oe, chs[0])
				}
			})
		})
	}
}

func TestQuietHosts(t *testing.T) {
	t.Run("a quiet dead host trips after ten failures", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := breaker.New("api", breaker.Config{})
			for i := range 9 {
				feed(t, b, "U")
				if b.State() != breaker.Closed {
					t.Fatalf("open after %d failures a minute apart", i+1)
				}
				time.Sleep(time.Minute)
			}
			feed(t, b, "U")
			if b.State() != breaker.Open {
				t.Fatalf("still %v after ten failures a minute apart", b.State())
			}
		})
	})
	t.Run("credit is forgotten after a Window of silence", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := breaker.New("api", breaker.Config{})
			feed(t, b, strings.Repeat("H", 100))
			if e := b.Snapshot().Evidence; e >= 0 {
				t.Fatalf("evidence %v after 100 successes, want credit (negative)", e)
			}
			time.Sleep(11 * time.Second)
			feed(t, b, strings.Repeat("U", 10))
			if b.State() != breaker.Open {
				t.Fatalf("a host silent for 11 s kept its credit: %+v", b.Snapshot())
			}
		})
	})
	t.Run("but kept across shorter pauses", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := breaker.New("api", breaker.Config{})
			feed(t, b, strings.Repeat("H", 100))
			time.Sleep(8 * time.Second)
			feed(t, b, strings.Repeat("U", 10))
			if b.State() != breaker.Closed {
				t.Fatalf("a host silent for 8 s lost its credit")
			}
		})
	})
}

func TestOpenProbesOncePerInterval(t *testing.T) {
	// A dead host receives one probe per OpenTimeout (1 s plus up to 10 %
	// jitter) from a breaker that callers hit every 10 ms, for 10 minutes:
	// failed probes never lengthen the open time, and are not state
	// changes.
	synctest.Test(t, func(t *testing.T) {
		var got changes
		b := breaker.New("api", breaker.Config{OnStateChange: got.add})
		feed(t, b, strings.Repeat("U", 10))
		if chs := got.list(); len(chs) != 1 || chs[0].OpenFor < time.Second || chs[0].OpenFor >= 1100*time.Millisecond {
			t.Fatalf("trip %+v, want the first probe in [1s, 1.1s)", chs)
		}
		start := time.Now()
		var probes []time.Duration
		for time.Since(start) < 10*time.Minute {
			if done, err := b.Allow(); err == nil {
				probes = append(probes, time.Since(start))
				done(classify.Unhealthy)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for i := 1; i < len(probes); i++ {
			if gap := probes[i] - probes[i-1]; gap < time.Second || gap > 1110*time.Millisecond {
				t.Fatalf("probes %d and %d %v apart, want [1s, 1.1s] (at the callers' 10 ms)", i-1, i, gap)
			}
		}
		if n := len(probes); n < 540 || n > 600 {
			t.Fatalf("%d probes in 10 minutes, want one per 1-1.1 s", n)
		}
		if chs := got.list(); len(chs) != 1 {
			t.Fatalf("failed probes reported as changes: %d changes", len(chs))
		}
	})
}

func TestRecoveryWithinTwoSeconds(t *testing.T) {
	// 20 outages of 1 s to 10 min, in which probes fail fast, hang until
	// their caller's 2 s deadline, or get 503s; then the host returns at a
	// random instant. Two callers call every 20 ms. The first successful call
	// after the return must come within 2 s in the median and 5 s at
	// worst, and the dead host must see at most one attempt per second.
	outages := []time.Duration{time.Second, 7 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
	modes := []string{"refused", "hung", "503"}
	rng := rand.New(rand.NewPCG(9, 9))
	var recoveries []time.Duration
	for trial := range 20 {
		outage := outages[trial%len(outages)] + time.Duration(rng.Int64N(int64(time.Second)))
		mode := modes[trial%len(modes)]
		synctest.Test(t, func(t *testing.T) {
			h := &host{}
			tr := breaker.NewTransport(h, breaker.Config{})
			h.mode.Store(mode)
			c := startCallers(t, tr, 2)
			time.Sleep(outage)
			sent := h.attempts.Load()
			recoveries = append(recoveries, c.recover(h))
			// The attempts before the trip, those in flight at it, and
			// then one probe per second at most.
			if limit := int64(breaker.DefaultMinCalls + 2 + outage/time.Second + 1); sent > limit {
				t.Errorf("%v outage (%s): the dead host saw %d attempts, want at most %d", outage, mode, sent, limit)
			}
		})
	}
	slices.Sort(recoveries)
	t.Logf("recovery times (20 trials): min %v, median %v, max %v", recoveries[0], recoveries[len(recoveries)/2], recoveries[len(recoveries)-1])
	if med := recoveries[len(recoveries)/2]; med > 2*time.Second {
		t.Errorf("median recovery %v, want at most 2s", med)
	}
	if worst := recoveries[len(recoveries)-1]; worst > 5*time.Second {
		t.Errorf("worst recovery %v, want at most 5s", worst)
	}
}

func TestStaleOutcomesAreIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api", breaker.Config{Jitter: -1})
		// Twenty attempts allowed while closed are still in flight when
		// ten others trip the breaker.
		var late []func(classify.Health)
		for range 20 {
			done, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			late = append(late, done)
		}
		feed(t, b, strings.Repeat("U", 10))
		if b.State() != breaker.Open {
			t.Fatalf("state %v, want open", b.State())
		}
		// A late success from before the trip does not close it.
		late[0](classify.Healthy)
		if b.State() != breaker.Open {
			t.Fatal("a success from before the trip closed the breaker")
		}
		// A probe closes it; then the late failures from before it opened
		// arrive, and must not reopen it.
		time.Sleep(time.Second)
		feed(t, b, "H")
		if b.State() != breaker.Closed {
			t.Fatalf("state %v after a good probe", b.State())
		}
		for _, done := range late[1:] {
			done(classify.Unhealthy)
		}
		if s := b.Snapshot(); s.State != breaker.Closed || s.Evidence != 0 || s.Trips != 1 {
			t.Fatalf("stale failures counted after the close: %+v", s)
		}
	})
}

func TestSnapshotAndEvidence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api", breaker.Config{})
		if s := b.Snapshot(); s.Host != "api" || s.State != breaker.Closed || s.Generation != 1 || s.Evidence != 0 {
			t.Fatalf("fresh: %+v", s)
		}
		feed(t, b, "UUUUU")
		if e := b.Snapshot().Evidence; e < 0.49 || e > 0.51 {
			t.Fatalf("evidence %v after 5 of the 10 failures that trip, want 0.5", e)
		}
		feed(t, b, "UUUUU")
		s := b.Snapshot()
		if s.State != breaker.Open || s.Generation != 2 || s.Trips != 1 || s.RetryIn < time.Second || s.Evidence != 0 {
			t.Fatalf("open: %+v", s)
		}
		time.Sleep(1100 * time.Millisecond)
		done, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ProbesInFlight != 1 || b.State() != breaker.HalfOpen {
			t.Fatalf("probing: %+v", s)
		}
		// The state and the time to the next probe are fields; the message
		// is the one of every refusal of a host tripped as dead.
		if oe := openError(t, b); oe.State != breaker.HalfOpen || oe.RetryIn < time.Second ||
			oe.Error() != deadHostMessage("api") {
			t.Fatalf("refusal while probing: %+v %q", oe, oe.Error())
		}
		done(classify.Healthy)
		if s := b.Snapshot(); s.State != breaker.Closed || s.Generation != 3 || s.ProbesInFlight != 0 {
			t.Fatalf("closed again: %+v", s)
		}
	})
}

func TestStateString(t *testing.T) {
	for st, want := range map[breaker.State]string{breaker.Closed: "closed", breaker.Open: "open", breaker.HalfOpen: "half-open", 7: "state(7)"} {
		if got := st.String(); got != want {
			t.Errorf("%d: %q, want %q", st, got, want)
		}
	}
}

// host is a stub server whose behaviour the test sets: "refused" (a
// network error at once), "hung" (no answer until the attempt's context
// ends), "503" (without a wait hint) or "ok" (200). It counts attempts.
type host struct {
	mode     atomic.Value // string
	attempts atomic.Int64
}

func (h *host) RoundTrip(req *http.Request) (*http.Response, error) {
	h.attempts.Add(1)
	switch h.mode.Load() {
	case "refused":
		return nil, errNet
	case "hung":
		<-req.Context().Done()
		return nil, req.Context().Err()
	case "503":
		return status(503)(req)
	}
	return status(200)(req)
}

// callers is a set of goroutines calling a Transport every 20 ms, each
// call with a 2 s deadline, inside a synctest bubble.
type callers struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	back    time.Time // when the host came back; zero before
	firstOK time.Time // the first success at or after back
}

// startCallers starts n callers of tr.
func startCallers(t *testing.T, tr http.RoundTripper, n int) *callers {
	c := &callers{stop: make(chan struct{})}
	for range n {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				start := time.Now()
				resp, err := tr.RoundTrip(get(t, ctx, "https://api.example.com/"))
				cancel()
				if err == nil {
					resp.Body.Close()
					c.mu.Lock()
					if resp.StatusCode == 200 && !c.back.IsZero() && !start.Before(c.back) && c.firstOK.IsZero() {
						c.firstOK = time.Now()
					}
					c.mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return c
}

// recover brings h back now, waits for the first successful call sent
// after that (10 s at most), stops the callers and returns the wait.
func (c *callers) recover(h *host) time.Duration {
	h.mode.Store("ok")
	c.mu.Lock()
	c.back = time.Now()
	c.mu.Unlock()
	var d time.Duration
	for range 1000 {
		time.Sleep(10 * time.Millisecond)
		c.mu.Lock()
		ok, back := c.firstOK, c.back
		c.mu.Unlock()
		if !ok.IsZero() {
			d = ok.Sub(back)
			break
		}
		d = time.Since(back)
	}
	close(c.stop)
	c.wg.Wait()
	return d
}

// deadHostMessage is the message of every refusal by a breaker tripped as
// a dead host's.
func deadHostMessage(host string) string {
	return "breaker: circuit open for " + host + ": nearly every recent attempt failed; one probe a second goes through until one succeeds. " +
		"If the host accepts connections but does not answer, each attempt waits out the caller's deadline: " +
		"set Retry.AttemptTimeout (or Retry.LearnedTimeout) in its policy to fail those attempts fast"
}

// Thirty refusals of one dead host, made at different times and counts,
// read as one message: errors group. What varies is in the fields.
func TestOpenErrorStable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api.example.com", breaker.Config{})
		feed(t, b, strings.Repeat("U", 10))
		msgs := map[string]int{}
		retryIns := map[time.Duration]bool{}
		for range 30 {
			if _, err := b.Allow(); err != nil {
				var oe *breaker.OpenError
				if !errors.As(err, &oe) {
					t.Fatalf("%T %v", err, err)
				}
				msgs[err.Error()]++
				retryIns[oe.RetryIn] = true
			}
			time.Sleep(17 * time.Millisecond)
		}
		if len(msgs) != 1 {
			t.Fatalf("%d distinct messages, want 1: %v", len(msgs), msgs)
		}
		if _, ok := msgs[deadHostMessage("api.example.com")]; !ok {
			t.Fatalf("message %v", msgs)
		}
		if len(retryIns) < 20 {
			t.Fatalf("RetryIn took %d values; the field should carry the time", len(retryIns))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New("api.example.com", breaker.Config{})
		feed(t, b, strings.Repeat("UUHUUHUHUH", 6)[:52])
		oe := openError(t, b)
		want := "breaker: circuit open for api.example.com: a sustained share of recent attempts failed, well above Breaker.FailureRate (30 % by default); one probe a second goes through until one succeeds"
		if oe.DeadHost || oe.Error() != want {
			t.Fatalf("degraded: %+v %q", oe, oe.Error())
		}
	})
}
