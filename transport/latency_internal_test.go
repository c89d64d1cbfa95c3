package transport

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/rebound-http/rebound/internal/hostname"
)

func TestLatBucketBounds(t *testing.T) {
	for _, c := range []struct {
		d     time.Duration
		upper int64
	}{
		{0, 4608},
		{time.Microsecond, 4608},
		{4095, 4608},
		{4096, 4608},
		{4608, 5120},
		{time.Millisecond, 1048576},
		{2 * time.Millisecond, 2097152},
		{10 * time.Millisecond, 10485760},
		{time.Second, 1006632960},
		{time.Hour, 1 << 38}, // over the range: the last bucket
	} {
		i := latBucket(int64(c.d))
		check(t, latUpper(i) == c.upper, "%v: bucket %d has upper bound %d, want %d", c.d, i, latUpper(i), c.upper)
	}
	// Every bucket's bounds: contiguous, each at most 12.5 % wider than
	// its lower bound, and every latency in a bucket is below its upper
	// bound and at or above the previous one's.
	prev := int64(0)
	for i := range latBuckets {
		up := latUpper(i)
		check(t, up > prev, "bucket %d: upper %d after %d", i, up, prev)
		if i > 0 {
			check(t, float64(up-prev) <= 0.125*float64(prev)+1, "bucket %d is %d wide from %d", i, up-prev, prev)
			check(t, latBucket(prev) == i, "lower bound %d of bucket %d falls in %d", prev, i, latBucket(prev))
			check(t, latBucket(up-1) == i, "%d falls in %d, not %d", up-1, latBucket(up-1), i)
		}
		prev = up
	}
}

func check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

// The quantile read from the histogram is never below the true one and at
// most 12.5 % above it (one bucket's width), for a spread of samples.
func TestQuantileWithinABucket(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		var counts [latBuckets]uint32
		n := 100 + r.IntN(2000)
		samples := make([]int64, n)
		for i := range samples {
			// Log-uniform from 10 µs to 10 s.
			samples[i] = int64(1e4 * math.Pow(1e6, r.Float64()))
			counts[latBucket(samples[i])]++
		}
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		for _, q := range []float64{0.5, 0.9, 0.95, 0.99} {
			rank := int(math.Ceil(q * float64(n)))
			truth := samples[rank-1]
			got := quantile(&counts, uint64(n), q)
			check(t, got > truth && float64(got) <= 1.125*float64(truth)+1, "trial %d q %v: got %d for true %d", trial, q, got, truth)
		}
	}
}

// Recording rotates windows: after two windows, old samples are gone.
func TestLatencyWindowsForget(t *testing.T) {
	l := &latencies{hedge: HedgeConfig{MinSamples: 10}.normalize()}
	h := l.add("a", 0)
	for range latWindowSamples {
		l.record(h, int64(time.Second), 0)
	}
	check(t, h.hedge.Load() == int64(l.hedge.MaxDelay), "slow samples: the cap, got %v", time.Duration(h.hedge.Load()))
	for range 2 * latWindowSamples {
		l.record(h, int64(2*time.Millisecond), 0)
	}
	check(t, h.hedge.Load() == 2097152, "after two windows of 2 ms samples the 1 s ones are forgotten: got %v", time.Duration(h.hedge.Load()))
	// Age rotates too: a quiet host forgets after two minutes.
	l.record(h, int64(time.Second), int64(latWindowAge)+1)
	l.record(h, int64(time.Second), 2*int64(latWindowAge)+2)
	check(t, h.hedge.Load() == 0, "too few samples left after two rotations by age: got %v", time.Duration(h.hedge.Load()))
}

// The table of hosts is bounded: beyond maxLatencyHosts recently used
// hosts, a new one is not tracked; idle hosts make room.
func TestLatencyHostsBounded(t *testing.T) {
	l := &latencies{hedge: HedgeConfig{}.normalize()}
	for i := range maxLatencyHosts {
		if l.add(fmt.Sprint("h", i), 0) == nil {
			t.Fatalf("host %d not tracked", i)
		}
	}
	check(t, l.add("one too many", int64(time.Minute)) == nil, "a full table of recent hosts tracks no more")
	check(t, l.host("h7") != nil, "a tracked host stays")
	check(t, l.add("later", int64(latIdle)+1) != nil, "idle hosts make room")
	check(t, l.n.Load() == 1, "the idle ones were forgotten: %d left", l.n.Load())
}

// Recording and looking up a host allocate nothing.
func TestLatencyRecordDoesNotAllocate(t *testing.T) {
	l := &latencies{hedge: HedgeConfig{}.normalize(), timeout: LearnedTimeoutConfig{}.normalize()}
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
	l.host(hostname.FromURL(req.URL))
	allocs := testing.AllocsPerRun(1000, func() {
		h := l.host(hostname.FromURL(req.URL))
		l.record(h, 1234567, mono())
		_ = l.learnedHedge(h)
	})
	check(t, allocs == 0, "%v allocations per record", allocs)
}

// BenchmarkLatencyRecord is the cost tracking adds to an attempt: the
// host's lookup, two clock reads and the record, from parallel callers.
func BenchmarkLatencyRecord(b *testing.B) {
	l := &latencies{hedge: HedgeConfig{}.normalize(), timeout: LearnedTimeoutConfig{}.normalize()}
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h := l.host(hostname.FromURL(req.URL))
			began := mono()
			now := mono()
			l.record(h, now-began+1e6, now)
		}
	})
}

// BenchmarkLatencyRecordSerial is BenchmarkLatencyRecord from one caller.
func BenchmarkLatencyRecordSerial(b *testing.B) {
	l := &latencies{hedge: HedgeConfig{}.normalize(), timeout: LearnedTimeoutConfig{}.normalize()}
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		h := l.host(hostname.FromURL(req.URL))
		began := mono()
		now := mono()
		l.record(h, now-began+1e6, now)
	}
}

// okBase answers every request at once with the same 200.
type okBase struct{ resp *http.Response }

func (b okBase) RoundTrip(*http.Request) (*http.Response, error) { return b.resp, nil }

// BenchmarkHealthyPath is the loop's cost on a success at once, with
// hedging and learned timeouts off (the default: 0 allocations), with a
// configured attempt timeout (a context and a timer per attempt), with
// learned timeouts (the same, and latency tracking), and with hedging,
// whose race runs the attempt on a goroutine of its own.
func BenchmarkHealthyPath(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"off", Config{}},
		{"attempt-timeout", Config{AttemptTimeout: time.Second}},
		{"learned-timeout", Config{LearnedTimeout: &LearnedTimeoutConfig{}}},
		{"hedge", Config{Hedge: &HedgeConfig{Delay: time.Second}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			rt := New(okBase{resp}, c.cfg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Censored attempts suspend the learned timeout only as a streak that
// lasts at least the timeout: a pause of the client that cuts every
// attempt in flight at once does not, the same attempts cut again one
// timeout later (the host is slower for everyone) do, and an answer
// between ends the streak.
func TestCensoredStreak(t *testing.T) {
	l := &latencies{timeout: LearnedTimeoutConfig{}.normalize()}
	h := &hostLatency{}
	now := int64(time.Hour)
	for range 200 {
		l.record(h, int64(time.Millisecond), now)
	}
	learned := h.timeout.Load()
	check(t, learned == int64(DefaultLearnedMin), "learned %v", time.Duration(learned))
	for range 20 {
		l.censored(h, learned, now+learned)
	}
	check(t, h.timeout.Load() == learned, "20 cuts at one instant suspended the timeout: %v", time.Duration(h.timeout.Load()))
	l.record(h, int64(time.Millisecond), now+learned+1)
	for range 20 {
		l.censored(h, learned, now+2*learned)
	}
	check(t, h.timeout.Load() == learned, "an answer ended the streak, and 20 cuts at one instant followed: %v", time.Duration(h.timeout.Load()))
	for range 20 {
		l.censored(h, learned, now+3*learned)
	}
	check(t, h.timeout.Load() == int64(DefaultLearnedMax), "40 cuts in a row over one timeout suspend it: %v", time.Duration(h.timeout.Load()))
}
