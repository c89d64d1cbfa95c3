package classify_test

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rebound-http/rebound/classify"
)

// now is the fixed local instant every hint is measured from: Saturday,
// 28 November 2026, 12:00:00 UTC.
var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// unix returns now+d as a Unix timestamp string.
func unix(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }

// hdr builds a header from name/value pairs with Header.Add, so names are
// canonicalised and repeated names keep their order.
func hdr(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

// maxWait is the wait of a hint too long for a Duration.
const maxWait = time.Duration(math.MaxInt64)

// hintCase is one header set and the wait it must give; ok false means
// "no usable hint", in which case want must be zero.
type hintCase struct {
	name string
	h    http.Header
	want time.Duration
	ok   bool
}

func TestRetryAfter(t *testing.T) {
	const (
		imf     = "Sat, 28 Nov 2026 12:02:00 GMT"    // IMF-fixdate, now+2m
		rfc850  = "Saturday, 28-Nov-26 12:02:00 GMT" // obsolete RFC 850, now+2m
		asctime = "Sat Nov 28 12:02:00 2026"         // ANSI C asctime(), now+2m
	)
	tests := []hintCase{
		// delay-seconds
		{"seconds", hdr("Retry-After", "120"), 120 * time.Second, true},
		{"zero", hdr("Retry-After", "0"), 0, true},
		{"surrounding spaces", hdr("Retry-After", " 5 "), 5 * time.Second, true},
		{"tab", hdr("Retry-After", "\t7"), 7 * time.Second, true},
		{"leading zeros", hdr("Retry-After", "007"), 7 * time.Second, true},
		{"many leading zeros", hdr("Retry-After", "000000000000000000000120"), 120 * time.Second, true},
		{"one day", hdr("Retry-After", "86400"), 24 * time.Hour, true},
		{"largest that fits a Duration", hdr("Retry-After", "9223372036"), 9223372036 * time.Second, true},
		{"negative ignored", hdr("Retry-After", "-5"), 0, false},
		{"plus sign ignored", hdr("Retry-After", "+5"), 0, false},
		{"fraction ignored", hdr("Retry-After", "1.5"), 0, false},
		{"unit ignored", hdr("Retry-After", "5s"), 0, false},
		{"two numbers ignored", hdr("Retry-After", "5 6"), 0, false},
		{"hex ignored", hdr("Retry-After", "0x10"), 0, false},
		// Too long for a Duration: the largest one (RFC 9111 §1.2.2).
		{"just past a Duration is the largest", hdr("Retry-After", "9223372037"), maxWait, true},
		{"past int64 is the largest", hdr("Retry-After", "9223372036854775808"), maxWait, true},
		{"overflow is the largest", hdr("Retry-After", "99999999999999999999"), maxWait, true},
		{"very long overflow is the largest", hdr("Retry-After", "1234567890123456789012345678901234567890"), maxWait, true},
		{"overflow with a letter ignored", hdr("Retry-After", "99999999999999999999x"), 0, false},
		{"negative overflow ignored", hdr("Retry-After", "-99999999999999999999"), 0, false},
		{"empty", hdr("Retry-After", ""), 0, false},
		{"blank", hdr("Retry-After", "   "), 0, false},
		{"absent", hdr("Content-Type", "text/plain"), 0, false},
		{"nil header", nil, 0, false},
		{"first of several values", hdr("Retry-After", "5", "Retry-After", "10"), 5 * time.Second, true},

		// HTTP-date, measured from now without a Date header.
		{"IMF-fixdate", hdr("Retry-After", imf), 2 * time.Minute, true},
		{"RFC 850", hdr("Retry-After", rfc850), 2 * time.Minute, true},
		{"asctime", hdr("Retry-After", asctime), 2 * time.Minute, true},
		{"asctime with a one-digit day", hdr("Retry-After", "Tue Dec  1 12:00:00 2026"), 3 * 24 * time.Hour, true},
		{"date with spaces", hdr("Retry-After", "  "+imf+" "), 2 * time.Minute, true},
		{"date in the past is zero", hdr("Retry-After", "Sat, 28 Nov 2026 11:00:00 GMT"), 0, true},
		{"date equal to now is zero", hdr("Retry-After", "Sat, 28 Nov 2026 12:00:00 GMT"), 0, true},
		{"date long past is zero", hdr("Retry-After", "Thu, 01 Jan 1970 00:00:00 GMT"), 0, true},
		{"date too far ahead for a Duration is the largest", hdr("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"), maxWait, true},
		{"date 300 years ahead is the largest", hdr("Retry-After", "Sat, 28 Nov 2326 12:00:00 GMT"), maxWait, true},
		{"date 200 years ahead fits", hdr("Retry-After", "Mon, 28 Nov 2226 12:00:00 GMT"), time.Date(2226, 11, 28, 12, 0, 0, 0, time.UTC).Sub(now), true},
		{"numeric zone ignored", hdr("Retry-After", "Sat, 28 Nov 2026 12:02:00 +0000"), 0, false},
		{"ISO 8601 ignored", hdr("Retry-After", "2026-11-28T12:02:00Z"), 0, false},
		{"garbage ignored", hdr("Retry-After", "soon"), 0, false},

		// HTTP-date measured against the response's Date header.
		{"Date 10 minutes behind local now",
			hdr("Date", "Sat, 28 Nov 2026 11:50:00 GMT", "Retry-After", "Sat, 28 Nov 2026 11:52:00 GMT"), 2 * time.Minute, true},
		{"Date 10 minutes ahead of local now",
			hdr("Date", "Sat, 28 Nov 2026 12:10:00 GMT", "Retry-After", "Sat, 28 Nov 2026 12:12:00 GMT"), 2 * time.Minute, true},
		{"Date in RFC 850",
			hdr("Date", "Saturday, 28-Nov-26 11:50:00 GMT", "Retry-After", "Sat, 28 Nov 2026 11:50:30 GMT"), 30 * time.Second, true},
		{"Retry-After before Date is zero",
			hdr("Date", "Sat, 28 Nov 2026 12:10:00 GMT", "Retry-After", imf), 0, true},
		{"unparseable Date falls back to now",
			hdr("Date", "yesterday", "Retry-After", imf), 2 * time.Minute, true},
		{"empty Date falls back to now",
			hdr("Date", "", "Retry-After", imf), 2 * time.Minute, true},
		{"Date does not affect delay-seconds",
			hdr("Date", "Sat, 28 Nov 2026 11:00:00 GMT", "Retry-After", "30"), 30 * time.Second, true},
		{"Date too far behind for a Duration is the largest",
			hdr("Date", "Mon, 01 Jan 0001 00:00:00 GMT", "Retry-After", imf), maxWait, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := classify.RetryAfter(tt.h, now)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, d)
		})
	}
}

func TestRetryAfterNowInAnotherZone(t *testing.T) {
	// The instant matters, not the zone now is expressed in.
	tokyo := now.In(time.FixedZone("JST", 9*60*60))
	d, ok := classify.RetryAfter(hdr("Retry-After", "Sat, 28 Nov 2026 12:02:00 GMT"), tokyo)
	assert.True(t, ok)
	assert.Equal(t, 2*time.Minute, d)
}

func TestRateLimitReset(t *testing.T) {
	tests := []hintCase{
		{"structured t", hdr("RateLimit", `"default";r=0;t=30`), 30 * time.Second, true},
		{"structured t zero", hdr("RateLimit", `"default";r=0;t=0`), 0, true},
		{"structured t first", hdr("RateLimit", `"burst";t=4;r=0`), 4 * time.Second, true},
		{"older list form", hdr("RateLimit", "limit=10, remaining=0, reset=7"), 7 * time.Second, true},
		{"older list form without spaces", hdr("RateLimit", "limit=10,remaining=0,reset=7"), 7 * time.Second, true},
		{"second policy when the first has no t", hdr("RateLimit", `"day";r=100, "minute";r=0;t=12`), 12 * time.Second, true},
		{"second policy when the first t is malformed", hdr("RateLimit", `"day";r=0;t=x, "minute";r=0;t=12`), 12 * time.Second, true},
		{"negative t ignored", hdr("RateLimit", `"default";r=0;t=-1`), 0, false},
		{"fractional t ignored", hdr("RateLimit", `"default";r=0;t=1.5`), 0, false},
		{"overflowing t is the largest", hdr("RateLimit", `"default";r=0;t=99999999999999999999`), maxWait, true},
		{"overflowing reset is the largest", hdr("RateLimit", "limit=10, remaining=0, reset=9223372037"), maxWait, true},
		{"overflowing RateLimit-Reset is the largest", hdr("RateLimit-Reset", "99999999999999999999"), maxWait, true},
		{"overflowing remaining leaves quota", hdr("RateLimit", `"default";r=99999999999999999999;t=30`), 0, false},
		{"no t", hdr("RateLimit", `"default";r=0`), 0, false},
		{"t as a bare item is not a parameter", hdr("RateLimit", `t`), 0, false},
		{"r is not a reset", hdr("RateLimit", `"default";r=30`), 0, false},
		{"empty", hdr("RateLimit", ""), 0, false},
		{"garbage", hdr("RateLimit", ";;;,,,==="), 0, false},
		{"RateLimit-Reset", hdr("RateLimit-Reset", "40"), 40 * time.Second, true},
		{"RateLimit-Reset with spaces", hdr("RateLimit-Reset", " 40 "), 40 * time.Second, true},
		{"RateLimit-Reset negative ignored", hdr("RateLimit-Reset", "-40"), 0, false},
		{"RateLimit-Reset when RateLimit has no t", hdr("RateLimit", `"default";r=0`, "RateLimit-Reset", "40"), 40 * time.Second, true},
		{"RateLimit t over RateLimit-Reset", hdr("RateLimit", `"default";r=0;t=30`, "RateLimit-Reset", "40"), 30 * time.Second, true},
		{"absent", hdr("X-RateLimit-Reset", "40"), 0, false},
		{"nil header", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := classify.RateLimitReset(tt.h)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, d)
		})
	}
}

func TestXRateLimitReset(t *testing.T) {
	tests := []hintCase{
		{"seconds", hdr("X-RateLimit-Reset", "90"), 90 * time.Second, true},
		{"zero", hdr("X-RateLimit-Reset", "0"), 0, true},
		{"spaces", hdr("X-RateLimit-Reset", " 90 "), 90 * time.Second, true},
		{"largest count of seconds", hdr("X-RateLimit-Reset", "999999999"), 999999999 * time.Second, true},
		{"Unix timestamp now+90s", hdr("X-RateLimit-Reset", unix(90*time.Second)), 90 * time.Second, true},
		{"Unix timestamp now+1h", hdr("X-RateLimit-Reset", unix(time.Hour)), time.Hour, true},
		{"Unix timestamp now", hdr("X-RateLimit-Reset", unix(0)), 0, true},
		{"Unix timestamp in the past", hdr("X-RateLimit-Reset", unix(-100*time.Second)), 0, true},
		{"smallest Unix timestamp (2001) is past", hdr("X-RateLimit-Reset", "1000000000"), 0, true},
		{"millisecond timestamp ignored", hdr("X-RateLimit-Reset", strconv.FormatInt(now.Add(90*time.Second).UnixMilli(), 10)), 0, false},
		{"negative ignored", hdr("X-RateLimit-Reset", "-5"), 0, false},
		{"fraction ignored", hdr("X-RateLimit-Reset", "1.5"), 0, false},
		{"overflow is the largest", hdr("X-RateLimit-Reset", "99999999999999999999"), maxWait, true},
		{"largest int64 timestamp is the largest", hdr("X-RateLimit-Reset", "9223372036854775807"), maxWait, true},
		{"timestamp 300 years ahead is the largest", hdr("X-RateLimit-Reset", strconv.FormatInt(now.Unix()+300*365*24*3600, 10)), maxWait, true},
		{"too large for milliseconds too is the largest", hdr("X-RateLimit-Reset", "10000000000000000"), maxWait, true},
		{"timestamp 200 years ahead fits", hdr("X-RateLimit-Reset", unix(200*365*24*time.Hour)), 200 * 365 * 24 * time.Hour, true},
		{"date ignored", hdr("X-RateLimit-Reset", "Sat, 28 Nov 2026 12:02:00 GMT"), 0, false},
		// The server's clock is 50 s ahead of ours (we are behind): its
		// reset 1 s from its Date is 1 s away, not 51 s.
		{"Unix timestamp measured from Date", hdr("X-RateLimit-Reset", unix(51*time.Second), "Date", now.Add(50*time.Second).Format(http.TimeFormat)), time.Second, true},
		{"Unix timestamp with a bad Date measured from now", hdr("X-RateLimit-Reset", unix(51*time.Second), "Date", "yesterday"), 51 * time.Second, true},
		{"empty", hdr("X-RateLimit-Reset", ""), 0, false},
		{"absent", hdr("Retry-After", "5"), 0, false},
		{"nil header", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := classify.XRateLimitReset(tt.h, now)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, d)
		})
	}
}

func TestWaitHint(t *testing.T) {
	tests := []hintCase{
		{"nil header", nil, 0, false},
		{"empty header", http.Header{}, 0, false},
		{"no hint headers", hdr("Content-Type", "application/json", "Date", "Sat, 28 Nov 2026 12:00:00 GMT"), 0, false},

		// Each header alone.
		{"Retry-After alone", hdr("Retry-After", "120"), 120 * time.Second, true},
		{"RateLimit alone", hdr("RateLimit", `"default";r=0;t=30`), 30 * time.Second, true},
		{"RateLimit-Reset alone", hdr("RateLimit-Reset", "40"), 40 * time.Second, true},
		{"X-RateLimit-Reset seconds alone", hdr("X-RateLimit-Reset", "90"), 90 * time.Second, true},
		{"X-RateLimit-Reset timestamp alone", hdr("X-RateLimit-Reset", unix(90*time.Second)), 90 * time.Second, true},

		// Precedence: Retry-After, then RateLimit, then X-RateLimit-Reset.
		{"Retry-After over the rest",
			hdr("Retry-After", "3", "RateLimit", `"default";r=0;t=30`, "X-RateLimit-Reset", "90"), 3 * time.Second, true},
		{"Retry-After zero still wins",
			hdr("Retry-After", "0", "RateLimit", `"default";r=0;t=30`), 0, true},
		{"Retry-After date in the past still wins",
			hdr("Retry-After", "Sat, 28 Nov 2026 11:00:00 GMT", "RateLimit", `"default";r=0;t=30`), 0, true},
		{"RateLimit over X-RateLimit-Reset",
			hdr("RateLimit", `"default";r=0;t=30`, "X-RateLimit-Reset", "90"), 30 * time.Second, true},
		{"RateLimit-Reset over X-RateLimit-Reset",
			hdr("RateLimit-Reset", "40", "X-RateLimit-Reset", "90"), 40 * time.Second, true},

		// A malformed header falls through to the next.
		{"malformed Retry-After falls through to RateLimit",
			hdr("Retry-After", "soon", "RateLimit", `"default";r=0;t=30`, "X-RateLimit-Reset", "90"), 30 * time.Second, true},
		{"negative Retry-After falls through",
			hdr("Retry-After", "-5", "RateLimit-Reset", "40"), 40 * time.Second, true},
		{"fractional Retry-After falls through",
			hdr("Retry-After", "1.5", "X-RateLimit-Reset", "90"), 90 * time.Second, true},
		{"overflowing Retry-After still wins",
			hdr("Retry-After", "99999999999999999999", "RateLimit", `"default";r=0;t=30`), maxWait, true},
		{"Retry-After date beyond a Duration still wins",
			hdr("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT", "X-RateLimit-Reset", "90"), maxWait, true},
		{"malformed RateLimit falls through to X-RateLimit-Reset",
			hdr("RateLimit", `"default";r=0;t=x`, "X-RateLimit-Reset", "90"), 90 * time.Second, true},
		{"everything malformed",
			hdr("Retry-After", "-1", "RateLimit", "t=-1", "RateLimit-Reset", "x", "X-RateLimit-Reset", "1.5"), 0, false},

		// The Date header applies to Retry-After's HTTP-date.
		{"skewed Date",
			hdr("Date", "Sat, 28 Nov 2026 11:50:00 GMT", "Retry-After", "Sat, 28 Nov 2026 11:52:00 GMT"), 2 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := classify.WaitHint(tt.h, now)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, d)
		})
	}
}

// TestWaitHintIgnoresResetWhileQuotaRemains: rate-limit headers ride on
// every response of many APIs (GitHub sends X-RateLimit-Reset, the time its
// hourly window resets, on all of them). Their reset time is a wait only
// when the quota is used up; a 502 with 4,999 requests left must fall back
// to backoff, not wait for the window (or, over the retry loop's cap, not
// be retried at all).
func TestWaitHintIgnoresResetWhileQuotaRemains(t *testing.T) {
	tests := []hintCase{
		{"X-RateLimit quota left",
			hdr("X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", unix(45*time.Minute)), 0, false},
		{"X-RateLimit quota used up",
			hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(45*time.Minute)), 45 * time.Minute, true},
		{"X-RateLimit remaining unknown",
			hdr("X-RateLimit-Reset", unix(90*time.Second)), 90 * time.Second, true},
		{"X-RateLimit remaining malformed",
			hdr("X-RateLimit-Remaining", "lots", "X-RateLimit-Reset", "90"), 90 * time.Second, true},
		{"RateLimit quota left",
			hdr("RateLimit", `"default";r=50;t=30`), 0, false},
		{"RateLimit quota used up",
			hdr("RateLimit", `"default";r=0;t=30`), 30 * time.Second, true},
		{"RateLimit first policy has quota, second is used up",
			hdr("RateLimit", `"hour";r=4000;t=3000, "second";r=0;t=1`), time.Second, true},
		{"older RateLimit quota left",
			hdr("RateLimit", "limit=10, remaining=5, reset=7"), 0, false},
		{"RateLimit-Reset with quota left",
			hdr("RateLimit-Remaining", "5", "RateLimit-Reset", "40"), 0, false},
		{"Retry-After is a wait whatever the quota",
			hdr("Retry-After", "3", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", unix(45*time.Minute)), 3 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := classify.WaitHint(tt.h, now)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, d)
		})
	}
}

func TestWaitHintDelaySecondsDoesNotAllocate(t *testing.T) {
	seconds := hdr("Retry-After", "120")
	var d time.Duration
	assert.Zero(t, testing.AllocsPerRun(100, func() { d, _ = classify.WaitHint(seconds, now) }), "delay-seconds")
	assert.Equal(t, 120*time.Second, d)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = classify.WaitHint(nil, now) }), "nil header")
}

func BenchmarkWaitHint(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    http.Header
	}{
		{"none", hdr("Content-Type", "application/json")},
		{"seconds", hdr("Retry-After", "120")},
		{"http-date", hdr("Retry-After", "Sat, 28 Nov 2026 12:02:00 GMT")},
		{"http-date+Date", hdr("Retry-After", "Sat, 28 Nov 2026 12:02:00 GMT", "Date", "Sat, 28 Nov 2026 11:59:00 GMT")},
		{"ratelimit", hdr("RateLimit", `"default";r=0;t=30`)},
		{"x-ratelimit-reset", hdr("X-RateLimit-Reset", unix(90*time.Second))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				classify.WaitHint(bc.h, now)
			}
		})
	}
}
