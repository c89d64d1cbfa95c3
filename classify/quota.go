package classify

import (
	"net/http"
	"strings"
	"time"
)

// Quota limits: a quota header outside them is ignored (not clamped), so a
// hostile or broken value can neither stall a client nor unleash it.
const (
	// MaxQuotaRemaining is the largest remaining count Quota accepts.
	MaxQuotaRemaining = 1 << 30
	// MaxQuotaWindow is the longest time to a quota's reset Quota accepts.
	MaxQuotaWindow = 24 * time.Hour
)

// Quota returns what is left of the server's rate-limit quota, from the
// response headers h measured at now: remaining requests until the window
// resets, in reset. It reads, in order:
//
//   - RateLimit of the IETF httpapi draft, `"name";r=50;t=30` (one item per
//     policy; the item with the fewest requests left wins), with
//     RateLimit-Policy's q=limit to check it when present;
//   - the older draft's list form, `limit=100, remaining=50, reset=30`, or
//     its separate RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
//     headers;
//   - X-RateLimit-Remaining with X-RateLimit-Reset (seconds, or from
//     1,000,000,000 on a Unix timestamp, measured against the response's
//     Date when it has one) and X-RateLimit-Limit.
//
// A set is ignored, and the next one tried, when a value is malformed or
// negative, when remaining exceeds the limit the same set states, when the
// reset is not in (0, MaxQuotaWindow], or when remaining exceeds
// MaxQuotaRemaining. ok is false when no set gave a quota. Quota never
// panics and allocates nothing for well-formed headers of one policy.
func Quota(h http.Header, now time.Time) (remaining int64, reset time.Duration, ok bool) {
	if len(h) == 0 {
		return 0, 0, false
	}
	if v := h["Ratelimit"]; len(v) > 0 {
		if r, t, ok := ietfQuota(v[0], h["Ratelimit-Policy"]); ok {
			return r, t, true
		}
		if r, t, ok := listQuota(v[0]); ok {
			return r, t, true
		}
	}
	if v := h["Ratelimit-Remaining"]; len(v) > 0 {
		if r, t, ok := checkQuota(first(v), first(h["Ratelimit-Reset"]), first(h["Ratelimit-Limit"])); ok {
			return r, seconds(t), true
		}
	}
	if v := h["X-Ratelimit-Remaining"]; len(v) > 0 {
		resetV := strings.TrimSpace(first(h["X-Ratelimit-Reset"]))
		secs, okReset := parseSeconds(resetV)
		if okReset && secs >= unixThreshold {
			// A Unix timestamp: seconds from now.
			if secs >= unixThreshold*1000 {
				return 0, 0, false // milliseconds: a unit not taken
			}
			secs -= serverNow(h, now).Unix()
			if secs <= 0 {
				return 0, 0, false
			}
			resetV = ""
		}
		if !okReset {
			return 0, 0, false
		}
		if resetV == "" {
			r, _, ok := checkQuota(first(v), "1", first(h["X-Ratelimit-Limit"]))
			if ok && secs <= int64(MaxQuotaWindow/time.Second) {
				return r, time.Duration(secs) * time.Second, true
			}
			return 0, 0, false
		}
		if r, t, ok := checkQuota(first(v), resetV, first(h["X-Ratelimit-Limit"])); ok {
			return r, seconds(t), true
		}
	}
	return 0, 0, false
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// checkQuota parses a remaining count, a reset in seconds and an optional
// limit, and applies Quota's rules to them.
func checkQuota(remaining, reset, limit string) (int64, int64, bool) {
	r, ok := parseSeconds(strings.TrimSpace(remaining))
	if !ok || r > MaxQuotaRemaining {
		return 0, 0, false
	}
	t, ok := parseSeconds(strings.TrimSpace(reset))
	if !ok || t <= 0 || t > int64(MaxQuotaWindow/time.Second) {
		return 0, 0, false
	}
	if limit = strings.TrimSpace(limit); limit != "" {
		if l, ok := parseSeconds(limit); !ok || r > l {
			return 0, 0, false
		}
	}
	return r, t, true
}

// ietfQuota reads the current draft's `"name";r=N;t=N` items, taking the
// one with the fewest requests left, and checks it against the q of the
// RateLimit-Policy item of the same name when there is one.
func ietfQuota(v string, policies []string) (int64, time.Duration, bool) {
	best, bestT, found := int64(-1), int64(0), false
	for item := range strings.SplitSeq(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(item), ";")
		var r, t string
		for param := range strings.SplitSeq(params, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(param), "=")
			switch strings.TrimSpace(k) {
			case "r":
				r = val
			case "t":
				t = val
			}
		}
		if r == "" || t == "" {
			continue
		}
		rem, reset, ok := checkQuota(r, t, policyLimit(policies, strings.TrimSpace(name)))
		if !ok {
			continue
		}
		if !found || rem < best {
			best, bestT, found = rem, reset, true
		}
	}
	if !found {
		return 0, 0, false
	}
	return best, seconds(bestT), true
}

// policyLimit returns the q parameter of the RateLimit-Policy item named
// name, or "".
func policyLimit(policies []string, name string) string {
	for _, p := range policies {
		for item := range strings.SplitSeq(p, ",") {
			n, params, _ := strings.Cut(strings.TrimSpace(item), ";")
			if strings.TrimSpace(n) != name {
				continue
			}
			for param := range strings.SplitSeq(params, ";") {
				if k, val, _ := strings.Cut(strings.TrimSpace(param), "="); strings.TrimSpace(k) == "q" {
					return val
				}
			}
		}
	}
	return ""
}

// listQuota reads the older draft's `limit=N, remaining=N, reset=N` form.
func listQuota(v string) (int64, time.Duration, bool) {
	var limit, remaining, reset string
	for item := range strings.SplitSeq(v, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(item), "=")
		switch strings.TrimSpace(k) {
		case "limit":
			limit = val
		case "remaining":
			remaining = val
		case "reset":
			reset = val
		}
	}
	if remaining == "" {
		return 0, 0, false
	}
	r, t, ok := checkQuota(remaining, reset, limit)
	if !ok {
		return 0, 0, false
	}
	return r, seconds(t), true
}
