package breaker

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

func TestSettingsNormalise(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(*settings) bool
	}{
		{name: "zero is the defaults", cfg: Config{}, check: func(s *settings) bool {
			return s.window == 10*time.Second && s.unit == 625*time.Millisecond && s.minCalls == 10 && s.rate == 0.3 &&
				s.interval == time.Second && s.jitter == 0.1 && s.maxHosts == 10_000
		}},
		{name: "negatives are defaults", cfg: Config{Window: -1, MinCalls: -1, FailureRate: -1, OpenTimeout: -1, MaxHosts: -1}, check: func(s *settings) bool {
			return s.window == 10*time.Second && s.minCalls == 10 && s.rate == 0.3 && s.interval == time.Second && s.maxHosts == 10_000
		}},
		{name: "NaN rate is the default", cfg: Config{FailureRate: math.NaN()}, check: func(s *settings) bool { return s.rate == 0.3 }},
		{name: "rate capped at 0.8", cfg: Config{FailureRate: 3}, check: func(s *settings) bool { return s.rate == 0.8 }},
		{name: "rate at least 0.01", cfg: Config{FailureRate: 1e-9}, check: func(s *settings) bool { return s.rate == 0.01 }},
		{name: "run capped at 100", cfg: Config{MinCalls: 1 << 30}, check: func(s *settings) bool { return s.minCalls == 100 }},
		{name: "window at least 1ms", cfg: Config{Window: 3}, check: func(s *settings) bool { return s.window == time.Millisecond && s.unit > 0 }},
		{name: "negative jitter disables", cfg: Config{Jitter: -1}, check: func(s *settings) bool { return s.jitter == 0 }},
		{name: "jitter capped at 1", cfg: Config{Jitter: 7}, check: func(s *settings) bool { return s.jitter == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := newSettings(tt.cfg); !tt.check(s) {
				t.Fatalf("settings = %+v", *s)
			}
		})
	}
}

func TestProbeGapOnlyLengthens(t *testing.T) {
	s := newSettings(Config{})
	for _, r := range []float64{0, 0.5, 0.999999} {
		if d := s.probeGap(r); d < time.Second || d >= 1100*time.Millisecond {
			t.Fatalf("probeGap(%v) = %v, want [1s, 1.1s)", r, d)
		}
	}
}

// TestRuleWithinItsFields checks, for the extremes of the settings, that
// the fixed-point tests fit the score word and that rounding keeps each
// walk's steps on the safe side: e^L has mean at most 1 at the test's p0,
// which the false-trip bound needs.
func TestRuleWithinItsFields(t *testing.T) {
	for _, rate := range []float64{0.01, 0.1, 0.3, 0.5, 0.8} {
		for _, k := range []int{1, 10, 100} {
			r := newRule(rate, k)
			for name, tt := range map[string]sprt{"dead": r.dead, "degraded": r.degraded} {
				if tt.top > xMask || tt.up == 0 || tt.down == 0 || tt.credit >= tt.top {
					t.Fatalf("rate %v, run %d, %s test: %+v does not fit", rate, k, name, tt)
				}
				a, b := float64(tt.up)/scale, float64(tt.down)/scale
				if m := tt.p0*math.Exp(a) + (1-tt.p0)*math.Exp(-b); m > 1 {
					t.Fatalf("rate %v, %s test: E[e^L] = %v at p0, above 1", rate, name, m)
				}
			}
			// A fresh client trips after exactly k failures.
			w := r.fresh(0)
			for i := 1; i <= k; i++ {
				var trip int
				w, trip = r.next(w, true, 0)
				if (trip != 0) != (i == k) {
					t.Fatalf("rate %v, run %d: trip %d after %d failures", rate, k, trip, i)
				}
			}
		}
	}
}

func TestScoreWord(t *testing.T) {
	r := newRule(0.3, 10)
	t.Run("pack round-trips", func(t *testing.T) {
		d, g, now := unpack(pack(xMask, 1, math.MaxUint32))
		if d != xMask || g != 1 || now != math.MaxUint32 {
			t.Fatalf("unpack = %d %d %d", d, g, now)
		}
	})
	t.Run("a healthy host stays on its floor without writes", func(t *testing.T) {
		w := r.fresh(7)
		for range 30 { // the degraded test's credit takes 30 successes
			w, _ = r.next(w, false, 7)
		}
		if next, _ := r.next(w, false, 7); next != w {
			t.Fatalf("a success on the floor changed the word")
		}
		if d, g, _ := unpack(w); d != 0 || g != 0 {
			t.Fatalf("after 30 successes: %d %d, want the floors", d, g)
		}
	})
	t.Run("failures saturate at top", func(t *testing.T) {
		w := r.fresh(0)
		for range 1000 {
			w, _ = r.next(w, true, 0)
		}
		if d, g, _ := unpack(w); d != r.dead.top || g != r.degraded.top {
			t.Fatalf("after 1000 failures: %d %d, want %d %d", d, g, r.dead.top, r.degraded.top)
		}
	})
	t.Run("a late outcome keeps the later time and the credit", func(t *testing.T) {
		w := r.fresh(100)
		for range 10 {
			w, _ = r.next(w, false, 100)
		}
		w, _ = r.next(w, true, 90) // read the clock at 90, reported after 100
		d, _, now := unpack(w)
		if now != 100 || d != r.dead.up {
			t.Fatalf("late failure: dead %d at %d, want %d at 100 (credit kept)", d, now, r.dead.up)
		}
	})
	t.Run("a silence forgets credit, not failures", func(t *testing.T) {
		w := r.fresh(0)
		for range 10 {
			w, _ = r.next(w, false, 0)
		}
		w, _ = r.next(w, true, quietUnits)
		if d, g, _ := unpack(w); d != r.dead.credit+r.dead.up || g != r.degraded.credit+r.degraded.up {
			t.Fatalf("after a silence: %d %d, want fresh plus one failure", d, g)
		}
		for range 5 {
			w, _ = r.next(w, true, 2*quietUnits)
		}
		w, _ = r.next(w, true, 1000*quietUnits)
		if d, _, _ := unpack(w); d != r.dead.credit+7*r.dead.up {
			t.Fatalf("failures across silences: dead %d, want %d", d, r.dead.credit+7*r.dead.up)
		}
	})
	t.Run("a failure that overlapped a success skips the dead-host test", func(t *testing.T) {
		w := r.fresh(0)
		w, _ = r.nextOverlapped(w, true, true, 0)
		d, g, _ := unpack(w)
		if d != r.dead.credit || g != r.degraded.credit+r.degraded.up {
			t.Fatalf("overlapped failure: dead %d, degraded %d; want %d, %d", d, g, r.dead.credit, r.degraded.credit+r.degraded.up)
		}
		if got, _ := r.nextOverlapped(w, false, true, 0); got != func() uint64 { want, _ := r.next(w, false, 0); return want }() {
			t.Fatalf("a success is counted whatever the overlap flag says")
		}
	})
	t.Run("the clock wraps", func(t *testing.T) {
		w := r.fresh(math.MaxUint32 - 1)
		w, _ = r.next(w, false, math.MaxUint32-1)
		w, _ = r.next(w, true, 3) // 5 ticks later, across the wrap: not quiet
		if d, _, _ := unpack(w); d != r.dead.credit-r.dead.down+r.dead.up {
			t.Fatalf("across the wrap: dead %d, want %d (credit kept)", d, r.dead.credit-r.dead.down+r.dead.up)
		}
	})
}

func TestFalseTripBound(t *testing.T) {
	r := newRule(0.3, 10)
	tests := []struct {
		p        float64
		lo, hi   float64
		describe string
	}{
		{0.3, 8e-5, 1e-4, "the package doc's 9.0e-5"},
		{0.2, 1e-7, 2e-7, "the package doc's 1.3e-7"},
		{0, 0, 0, "a host that never fails"},
		{0.6, 1, 1, "no bound above the tolerated rate"},
		{1, 1, 1, "a dead host"},
	}
	for _, tt := range tests {
		if got := r.falseTripBound(tt.p, 1000); got < tt.lo || got > tt.hi {
			t.Errorf("p = %v: bound %.3g, want [%.3g, %.3g] (%s)", tt.p, got, tt.lo, tt.hi, tt.describe)
		}
	}
	if got := r.degraded.detectBound(0.6, 150); got < 0.99 {
		t.Errorf("detection bound at 60 %% within 150 calls: %v, want above 0.99", got)
	}
	if got := r.degraded.detectBound(0.3, 150); got != 0 {
		t.Errorf("detection bound at 30 %%: %v, want 0", got)
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		name, url, host string
		ok              bool
	}{
		{name: "plain", url: "https://api.example.com/x", host: "api.example.com", ok: true},
		{name: "default https port", url: "https://api.example.com:443/x", host: "api.example.com", ok: true},
		{name: "default http port", url: "http://api.example.com:80/", host: "api.example.com", ok: true},
		{name: "other port kept", url: "https://api.example.com:8443/", host: "api.example.com:8443", ok: true},
		{name: "http port on https kept", url: "https://api.example.com:80/", host: "api.example.com:80", ok: true},
		{name: "upper case folded", url: "https://API.Example.COM/", host: "api.example.com", ok: true},
		{name: "trailing dot", url: "https://api.example.com./", host: "api.example.com", ok: true},
		{name: "unicode", url: "https://bücher.example/", host: "xn--bcher-kva.example", ok: true},
		{name: "ipv6", url: "http://[::1]:80/", host: "[::1]", ok: true},
		{name: "no host", url: "/relative", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			k, ok := keyOf(req.URL)
			if ok != tt.ok || k.host != tt.host {
				t.Fatalf("keyOf = %+v, %v; want %q, %v", k, ok, tt.host, tt.ok)
			}
		})
	}
}

func TestKeyOfLowerCaseHostDoesNotAllocate(t *testing.T) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.example.com:443/x", nil)
	if n := testing.AllocsPerRun(100, func() { keyOf(req.URL) }); n != 0 {
		t.Fatalf("keyOf allocates %v times", n)
	}
}

// TestRoundTripAtCountsAtTheTimeGiven checks that an outcome sent through
// RoundTripAt is counted at the time the caller gave (the attempt's
// start), and one through RoundTrip at the breaker's own clock read when
// it comes back: the time of the last success, gen.lastOK, says which.
func TestRoundTripAtCountsAtTheTimeGiven(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const took = 5 * time.Second
		slow := roundTripper(func(*http.Request) (*http.Response, error) {
			time.Sleep(took)
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
		})
		tr := NewTransport(slow, Config{})
		req, err := http.NewRequest(http.MethodGet, "http://api.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		origin := tr.state().reg.set.origin
		lastOK := func() time.Duration {
			b := tr.state().breakerFor(req)
			return time.Duration(b.cur.Load().lastOK.Load()) * okTick
		}

		time.Sleep(time.Minute)
		start := time.Now()
		if _, err := tr.RoundTripAt(req, start); err != nil {
			t.Fatal(err)
		}
		if got, want := lastOK(), start.Sub(origin); got != want {
			t.Fatalf("RoundTripAt counted its success at %v, want its start %v", got, want)
		}
		start = time.Now()
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got, want := lastOK(), start.Add(took).Sub(origin); got != want {
			t.Fatalf("RoundTrip counted its success at %v, want its end %v", got, want)
		}
		if _, err := tr.RoundTripAt(nil, start); err == nil {
			t.Fatal("RoundTripAt of a nil request: no error")
		}
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRoundTripAtCountsAFailureAtItsEnd checks that a failure sent
// through RoundTripAt is counted when it came back, not at the time the
// caller read before it: an attempt that hung for longer than a Window
// after the host's last outcome finds the host quiet, so the credit its
// earlier successes earned is gone, exactly as through RoundTrip.
func TestRoundTripAtCountsAFailureAtItsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := false
		base := roundTripper(func(*http.Request) (*http.Response, error) {
			if hang {
				time.Sleep(30 * time.Second)
				return &http.Response{StatusCode: http.StatusBadGateway, Body: http.NoBody}, nil
			}
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
		})
		score := func(tr *Transport, req *http.Request) uint64 {
			return tr.state().breakerFor(req).cur.Load().score.Load()
		}
		var got [2]uint64
		for i, timed := range []bool{false, true} {
			hang = false
			tr := NewTransport(base, Config{})
			req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
			for range 50 { // earn credit
				tr.RoundTrip(req)
			}
			hang = true
			if timed {
				tr.RoundTripAt(req, time.Now())
			} else {
				tr.RoundTrip(req)
			}
			dead, degraded, _ := unpack(score(tr, req))
			got[i] = uint64(dead)<<32 | uint64(degraded)
		}
		if got[0] != got[1] {
			t.Fatalf("after a hung failure: RoundTrip's tests %x, RoundTripAt's %x", got[0], got[1])
		}
	})
}

// TestMemoFollowsTheRegistry checks the registry's memo of hosts as
// written (registry.forURL): spellings of one host share its breaker, a
// scheme whose default port differs does not, and a breaker evicted from
// the registry is never handed out again by the memo, so its host's next
// request counts on the breaker the registry tracks.
func TestMemoFollowsTheRegistry(t *testing.T) {
	u := func(s string) *url.URL {
		t.Helper()
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r := newRegistry(newSettings(Config{MaxHosts: 1}))
	a := r.forURL(u("https://a.example/x"))
	if again := r.forURL(u("https://a.example/y")); again != a {
		t.Fatal("the same host as written found another breaker")
	}
	for _, s := range []string{"https://A.Example./", "https://a.example:443/"} {
		if got := r.forURL(u(s)); got != a {
			t.Fatalf("%s: another breaker than https://a.example's", s)
		}
	}
	r2 := newRegistry(newSettings(Config{}))
	other := r2.forURL(u("http://a.example:443/"))
	if other == nil || other.Name() != "a.example:443" {
		t.Fatalf("http://a.example:443 found %v, want a breaker named a.example:443", other)
	}
	if got := r2.forURL(u("https://a.example:443/")); got == other || got.Name() != "a.example" {
		t.Fatal("https://a.example:443 found http://a.example:443's breaker")
	}

	// The bound is one host: another host, in another slot of the memo,
	// evicts a.example's breaker.
	b := "b.example"
	for i := 0; memoIndex(b) == memoIndex("a.example"); i++ {
		b = "b" + strconv.Itoa(i) + ".example"
	}
	if r.forURL(u("https://"+b+"/")) == nil || r.len() != 1 {
		t.Fatalf("tracked %d hosts, want 1", r.len())
	}
	again := r.forURL(u("https://a.example/x"))
	if again == a {
		t.Fatal("the memo handed out a breaker evicted from the registry")
	}
	if s := r.snapshot(); len(s) != 1 || s[0].Host != "a.example" || again == nil || again.Name() != "a.example" {
		t.Fatalf("registry holds %+v after a.example's return", s)
	}
}
