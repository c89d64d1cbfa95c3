package classify

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// maxHintSeconds is the largest number of seconds that fits a time.Duration.
// A larger value is taken as the largest Duration (see WaitHint).
const maxHintSeconds = math.MaxInt64 / int64(time.Second)

// maxWait is the largest wait a hint can give: a value that overflows a
// time.Duration is taken as this one, the way RFC 9111 §1.2.2 asks a cache
// to take a delta-seconds too large to represent as the largest it can.
const maxWait = time.Duration(math.MaxInt64)

// unixThreshold separates a count of seconds from a Unix timestamp in
// X-RateLimit-Reset: values from this one (September 2001) on are instants.
const unixThreshold = 1_000_000_000

// WaitHint returns how long the server asked the client to wait before the
// next attempt, from the response headers h, measured from now. It reads, in
// order of precedence:
//
//   - Retry-After (RFC 9110 §10.2.3), as delay-seconds or as an HTTP-date in
//     any of the three formats http.ParseTime knows; an HTTP-date is
//     measured against the response's Date header when that parses, so the
//     local clock's skew does not distort the wait;
//   - RateLimit's t parameter (IETF httpapi RateLimit draft, "t=N" seconds)
//     or the older draft's RateLimit-Reset;
//   - X-RateLimit-Reset, as seconds or, from 1,000,000,000 on, as a Unix
//     timestamp.
//
// A date in the past means zero. A value too large for a time.Duration (a
// count of seconds past 292 years, an HTTP-date in year 9999) is taken as
// the largest Duration, math.MaxInt64: a server asking for that long is
// over any cap, so a retry loop gives up rather than retrying at once.
// Negative or malformed values are ignored and the next header is tried;
// ok is false when none gave a value. WaitHint never panics, whatever the
// input.
func WaitHint(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if len(h) == 0 {
		return 0, false
	}
	if d, ok := RetryAfter(h, now); ok {
		return d, true
	}
	if d, ok := RateLimitReset(h); ok {
		return d, true
	}
	return XRateLimitReset(h, now)
}

// RetryAfter parses the Retry-After header of h, measured from now (or from
// h's Date header when the value is an HTTP-date). See WaitHint.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, ok := parseSeconds(v); ok {
		return seconds(secs), true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return until(serverNow(h, now), at)
}

// serverNow returns the instant of the response's Date header when it
// parses, else now: an instant the server names (an HTTP-date, an epoch
// reset) is measured against the server's own clock, so the local clock's
// skew does not distort the wait.
func serverNow(h http.Header, now time.Time) time.Time {
	if date := h.Get("Date"); date != "" {
		if d, err := http.ParseTime(date); err == nil {
			return d
		}
	}
	return now
}

// RateLimitReset parses the IETF RateLimit header's t parameter
// ("RateLimit: \"default\";r=0;t=30", or the older "limit=10, remaining=0,
// reset=30" form) and, failing that, the older draft's RateLimit-Reset
// header, all in seconds. See WaitHint.
func RateLimitReset(h http.Header) (time.Duration, bool) {
	if v := h.Get("Ratelimit"); v != "" {
		// The current draft puts t and r in one policy item; the older
		// one spreads reset and remaining over the list.
		var reset, remaining string
		for _, item := range strings.Split(v, ",") {
			var t, r string
			for _, param := range strings.Split(item, ";") {
				name, val, _ := strings.Cut(strings.TrimSpace(param), "=")
				val = strings.TrimSpace(val)
				switch name {
				case "t":
					t = val
				case "r":
					r = val
				case "reset":
					reset = val
				case "remaining":
					remaining = val
				}
			}
			if secs, ok := parseSeconds(t); ok && !quotaLeft(r) {
				return seconds(secs), true
			}
		}
		if secs, ok := parseSeconds(reset); ok && !quotaLeft(remaining) {
			return seconds(secs), true
		}
	}
	if quotaLeft(strings.TrimSpace(h.Get("Ratelimit-Remaining"))) {
		return 0, false
	}
	if secs, ok := parseSeconds(strings.TrimSpace(h.Get("Ratelimit-Reset"))); ok {
		return seconds(secs), true
	}
	return 0, false
}

// quotaLeft reports whether a remaining-quota value says requests are
// left, in which case a reset time is no reason to wait.
func quotaLeft(remaining string) bool {
	n, ok := parseSeconds(remaining)
	return ok && n > 0
}

// XRateLimitReset parses X-RateLimit-Reset as seconds or, from 1,000,000,000
// on, as a Unix timestamp measured from the response's Date (or from now
// when it has none). A timestamp too far ahead for
// a Duration is the largest one, except one that reads as a Unix timestamp
// in milliseconds (from 1,000,000,000,000, and within a Duration of now
// once divided by 1000): that is a unit this parser does not take, not a
// long wait, and it is ignored. See WaitHint.
func XRateLimitReset(h http.Header, now time.Time) (time.Duration, bool) {
	secs, ok := parseSeconds(strings.TrimSpace(h.Get("X-Ratelimit-Reset")))
	if !ok || quotaLeft(strings.TrimSpace(h.Get("X-Ratelimit-Remaining"))) {
		return 0, false
	}
	if secs < unixThreshold {
		return seconds(secs), true
	}
	now = serverNow(h, now)
	limit := now.Unix() + maxHintSeconds
	switch {
	case secs <= limit:
		return until(now, time.Unix(secs, 0))
	case secs >= unixThreshold*1000 && secs/1000 <= limit:
		return 0, false // milliseconds
	}
	return maxWait, true
}

// until returns the non-negative time from now to at, the largest
// Duration when the difference overflows (Sub saturates).
func until(now, at time.Time) (time.Duration, bool) {
	if !at.After(now) {
		return 0, true
	}
	return at.Sub(now), true
}

// seconds returns secs seconds as a Duration, the largest one when that
// overflows.
func seconds(secs int64) time.Duration {
	if secs > maxHintSeconds {
		return maxWait
	}
	return time.Duration(secs) * time.Second
}

// parseSeconds parses 1*DIGIT as a count of seconds. A count past
// math.MaxInt64 gives math.MaxInt64 (see seconds). Signs, spaces and
// fractions are rejected.
func parseSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-int64(c-'0'))/10 {
			n = math.MaxInt64 // saturated; the other digits are still checked
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
