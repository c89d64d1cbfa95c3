package classify_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rebound-http/rebound/classify"
	"github.com/stretchr/testify/assert"
)

func TestQuota(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		header    []string
		remaining int64
		reset     time.Duration
		ok        bool
	}{
		{"none", nil, 0, 0, false},
		{"ietf", []string{"RateLimit", `"default";r=50;t=30`}, 50, 30 * time.Second, true},
		{"ietf with policy", []string{"RateLimit", `"default";r=50;t=30`, "RateLimit-Policy", `"default";q=100;w=60`}, 50, 30 * time.Second, true},
		{"ietf over its policy's limit", []string{"RateLimit", `"default";r=500;t=30`, "RateLimit-Policy", `"default";q=100;w=60`}, 0, 0, false},
		{"ietf fewest left wins", []string{"RateLimit", `"burst";r=9;t=1, "day";r=5000;t=3600`}, 9, time.Second, true},
		{"ietf zero left", []string{"RateLimit", `"default";r=0;t=5`}, 0, 5 * time.Second, true},
		{"ietf no reset", []string{"RateLimit", `"default";r=50`}, 0, 0, false},
		{"ietf zero reset", []string{"RateLimit", `"default";r=50;t=0`}, 0, 0, false},
		{"ietf negative", []string{"RateLimit", `"default";r=-1;t=30`}, 0, 0, false},
		{"ietf window too long", []string{"RateLimit", `"default";r=5;t=86401`}, 0, 0, false},
		{"old list", []string{"RateLimit", "limit=100, remaining=50, reset=30"}, 50, 30 * time.Second, true},
		{"old list contradictory", []string{"RateLimit", "limit=10, remaining=50, reset=30"}, 0, 0, false},
		{"old headers", []string{"RateLimit-Limit", "100", "RateLimit-Remaining", "7", "RateLimit-Reset", "3"}, 7, 3 * time.Second, true},
		{"x seconds", []string{"X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "59", "X-RateLimit-Reset", "60"}, 59, time.Minute, true},
		{"x unix", []string{"X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", strconv.FormatInt(now.Unix()+3600, 10)}, 4999, time.Hour, true},
		{"x unix measured from Date", []string{"X-RateLimit-Remaining", "10", "X-RateLimit-Reset", strconv.FormatInt(now.Unix()+51, 10), "Date", now.Add(50 * time.Second).UTC().Format(http.TimeFormat)}, 10, time.Second, true},
		{"x unix past", []string{"X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", strconv.FormatInt(now.Unix()-1, 10)}, 0, 0, false},
		{"x milliseconds", []string{"X-RateLimit-Remaining", "10", "X-RateLimit-Reset", strconv.FormatInt(now.UnixMilli()+1000, 10)}, 0, 0, false},
		{"x remaining over limit", []string{"X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "6", "X-RateLimit-Reset", "1"}, 0, 0, false},
		{"x malformed", []string{"X-RateLimit-Remaining", "lots", "X-RateLimit-Reset", "1"}, 0, 0, false},
		{"x huge remaining", []string{"X-RateLimit-Remaining", "99999999999999999999", "X-RateLimit-Reset", "1"}, 0, 0, false},
		{"x no reset", []string{"X-RateLimit-Remaining", "10"}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := make(http.Header)
			for i := 0; i+1 < len(tt.header); i += 2 {
				h.Set(tt.header[i], tt.header[i+1])
			}
			r, d, ok := classify.Quota(h, now)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.remaining, r)
			assert.Equal(t, tt.reset, d)
		})
	}
}

func TestQuotaAllocatesNothing(t *testing.T) {
	h := http.Header{"Ratelimit": {`"default";r=50;t=30`}, "X-Ratelimit-Remaining": {"1"}}
	now := time.Now()
	assert.Zero(t, testing.AllocsPerRun(100, func() { classify.Quota(h, now) }))
	empty := http.Header{"Content-Type": {"text/plain"}}
	assert.Zero(t, testing.AllocsPerRun(100, func() { classify.Quota(empty, now) }))
}

func FuzzQuota(f *testing.F) {
	for _, seed := range [][3]string{
		{`"default";r=50;t=30`, `"default";q=100;w=60`, ""},
		{"limit=100, remaining=50, reset=30", "", ""},
		{"", "", "59"},
		{`"a";r=1;t=1, "b";r=0;t=99999999999999999999`, `"a";q=0`, "-1"},
		{`;;;,,,==`, `"";q=`, "1800003600"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, ratelimit, policy, xremaining string) {
		h := http.Header{"Ratelimit": {ratelimit}, "Ratelimit-Policy": {policy},
			"X-Ratelimit-Remaining": {xremaining}, "X-Ratelimit-Reset": {xremaining}}
		r, d, ok := classify.Quota(h, now)
		if !ok {
			if r != 0 || d != 0 {
				t.Fatalf("not ok but %d, %v", r, d)
			}
			return
		}
		if r < 0 || r > classify.MaxQuotaRemaining {
			t.Fatalf("remaining %d out of range", r)
		}
		if d <= 0 || d > classify.MaxQuotaWindow {
			t.Fatalf("reset %v out of range", d)
		}
	})
}
