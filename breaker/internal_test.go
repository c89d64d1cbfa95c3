package breaker

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestWindowCountsOnlyItsBuckets(t *testing.T) {
	type add struct {
		idx    uint64
		failed bool
	}
	tests := []struct {
		name       string
		adds       []add
		at         uint64
		calls, bad int64
	}{
		{name: "empty", at: 0},
		{name: "one bucket", adds: []add{{3, false}, {3, true}, {3, true}}, at: 3, calls: 3, bad: 2},
		{name: "spread over the window", adds: []add{{0, true}, {5, false}, {9, false}}, at: 9, calls: 3, bad: 1},
		{name: "oldest bucket slides out", adds: []add{{0, true}, {5, false}, {9, false}}, at: 10, calls: 2, bad: 0},
		{name: "all expired", adds: []add{{0, true}, {5, false}}, at: 15, calls: 0, bad: 0},
		{name: "slot reused resets counts", adds: []add{{2, true}, {2, true}, {12, false}}, at: 12, calls: 1, bad: 0},
		{name: "later bucket written by a racer is left out", adds: []add{{7, true}, {8, true}}, at: 7, calls: 1, bad: 1},
		{name: "epoch wraps", adds: []add{{epochMask, true}, {epochMask + 1, false}}, at: epochMask + 1, calls: 2, bad: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(10)
			for _, a := range tt.adds {
				w.add(a.idx, a.failed)
			}
			calls, bad := w.sum(tt.at)
			if calls != tt.calls || bad != tt.bad {
				t.Fatalf("sum(%d) = %d calls, %d failures; want %d, %d", tt.at, calls, bad, tt.calls, tt.bad)
			}
		})
	}
}

func TestWindowSaturatesInsteadOfOverflowing(t *testing.T) {
	w := newWindow(1)
	w.buckets[0].Store(pack(4, countMax-1, countMax-1))
	for range 3 {
		w.add(4, true)
		w.add(4, false)
	}
	e, f, s := unpack(w.buckets[0].Load())
	if e != 4 || f != countMax || s != countMax {
		t.Fatalf("bucket = epoch %d, %d failures, %d successes; want 4, %d, %d", e, f, s, countMax, countMax)
	}
}

func TestWindowWithoutBucketsCountsNothing(t *testing.T) {
	var w window
	w.add(1, true)
	if calls, _ := w.sum(1); calls != 0 {
		t.Fatalf("zero window holds %d calls", calls)
	}
}

func TestOpenDuration(t *testing.T) {
	const base, cap = 5 * time.Second, 60 * time.Second
	tests := []struct {
		name   string
		trips  int
		jitter float64
		r      float64
		want   time.Duration
	}{
		{name: "first trip", trips: 1, want: 5 * time.Second},
		{name: "zero trips means first", trips: 0, want: 5 * time.Second},
		{name: "second doubles", trips: 2, want: 10 * time.Second},
		{name: "fourth", trips: 4, want: 40 * time.Second},
		{name: "fifth is capped", trips: 5, want: 60 * time.Second},
		{name: "many trips stay capped", trips: 1000, want: 60 * time.Second},
		{name: "jitter at r=0 keeps the full time", trips: 1, jitter: 0.1, r: 0, want: 5 * time.Second},
		{name: "jitter shortens by r·jitter", trips: 1, jitter: 0.1, r: 0.5, want: 4750 * time.Millisecond},
		{name: "jitter applies after the cap", trips: 9, jitter: 0.1, r: 0.999, want: 60*time.Second - time.Duration(float64(60*time.Second)*0.1*0.999)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := openDuration(tt.trips, base, cap, tt.jitter, tt.r); got != tt.want {
				t.Fatalf("openDuration = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("huge cap does not overflow", func(t *testing.T) {
		if got := openDuration(200, time.Second, 1<<62, 0, 0); got != 1<<62 {
			t.Fatalf("openDuration = %v, want the cap", got)
		}
	})
}

func TestLengthen(t *testing.T) {
	tests := []struct {
		name          string
		d, hint, want time.Duration
	}{
		{name: "no hint", d: 5 * time.Second, want: 5 * time.Second},
		{name: "shorter hint never shortens", d: 5 * time.Second, hint: time.Second, want: 5 * time.Second},
		{name: "longer hint lengthens", d: 5 * time.Second, hint: 30 * time.Second, want: 30 * time.Second},
		{name: "hint over the cap is capped", d: 5 * time.Second, hint: time.Hour, want: 60 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lengthen(tt.d, tt.hint, 60*time.Second); got != tt.want {
				t.Fatalf("lengthen = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSettingsNormalise(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(*settings) bool
	}{
		{name: "zero is the defaults", cfg: Config{}, check: func(s *settings) bool {
			return s.window == 10*time.Second && s.buckets == 10 && s.width == time.Second &&
				s.minCalls == 20 && s.rate == 0.5 && s.consecutive == 5 && s.base == 5*time.Second &&
				s.maxOpen == 60*time.Second && s.jitter == 0.1 && s.probes == 1 && s.maxHosts == 10_000
		}},
		{name: "negatives are defaults", cfg: Config{Window: -1, Buckets: -1, MinCalls: -1, FailureRate: -1, OpenTimeout: -1, MaxOpenTimeout: -1, HalfOpenProbes: -1, MaxHosts: -1}, check: func(s *settings) bool {
			return s.window == 10*time.Second && s.buckets == 10 && s.minCalls == 20 && s.rate == 0.5 &&
				s.base == 5*time.Second && s.maxOpen == 60*time.Second && s.probes == 1 && s.maxHosts == 10_000
		}},
		{name: "negative consecutive disables", cfg: Config{ConsecutiveFailures: -1}, check: func(s *settings) bool { return s.consecutive == 0 }},
		{name: "negative jitter disables", cfg: Config{Jitter: -1}, check: func(s *settings) bool { return s.jitter == 0 }},
		{name: "jitter capped", cfg: Config{Jitter: 7}, check: func(s *settings) bool { return s.jitter == 0.5 }},
		{name: "rate capped at 1", cfg: Config{FailureRate: 3}, check: func(s *settings) bool { return s.rate == 1 }},
		{name: "max open at least base", cfg: Config{OpenTimeout: time.Minute, MaxOpenTimeout: time.Second}, check: func(s *settings) bool { return s.maxOpen == time.Minute }},
		{name: "buckets capped", cfg: Config{Buckets: 1 << 20}, check: func(s *settings) bool { return s.buckets == maxBuckets }},
		{name: "no bucket shorter than 1ns", cfg: Config{Window: 3, Buckets: 10}, check: func(s *settings) bool { return s.buckets == 3 && s.width == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := newSettings(tt.cfg); !tt.check(s) {
				t.Fatalf("settings = %+v", *s)
			}
		})
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
			k, ok := keyOf(req)
			if ok != tt.ok || k.host != tt.host {
				t.Fatalf("keyOf = %+v, %v; want %q, %v", k, ok, tt.host, tt.ok)
			}
		})
	}
}

func TestKeyOfLowerCaseHostDoesNotAllocate(t *testing.T) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.example.com:443/x", nil)
	if n := testing.AllocsPerRun(100, func() { keyOf(req) }); n != 0 {
		t.Fatalf("keyOf allocates %v times", n)
	}
}

func TestWindowLateOutcomeKeepsTheCurrentBucket(t *testing.T) {
	// A goroutine that read the bucket index, then was descheduled for a
	// whole window (a tiny Window, or a starved machine), reports into a
	// slot that a newer bucket now owns. It must not wipe that bucket.
	tests := []struct {
		name       string
		at, late   uint64
		calls, bad int64
	}{
		{name: "one window late", at: 15, late: 5, calls: 4, bad: 3},
		{name: "many windows late", at: 45, late: 5, calls: 4, bad: 3},
		{name: "late but within the window", at: 15, late: 6, calls: 4, bad: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(10)
			w.add(tt.at, true)
			w.add(tt.at, true)
			w.add(tt.at, false)
			w.add(tt.late, true)
			calls, bad := w.sum(tt.at)
			if calls != tt.calls || bad != tt.bad {
				t.Fatalf("sum(%d) = %d calls, %d failures; want %d, %d", tt.at, calls, bad, tt.calls, tt.bad)
			}
		})
	}
}
