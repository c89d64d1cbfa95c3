package classify_test

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rebound-http/rebound/classify"
)

// delaySeconds reports whether v, trimmed as the parsers trim it, is
// 1*DIGIT, and its value when that is at most 1e9.
func delaySeconds(v string) (n int64, small bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	digits := strings.TrimLeft(v, "0")
	if len(digits) > 10 {
		return 0, false
	}
	n, _ = strconv.ParseInt("0"+digits, 10, 64)
	return n, n <= 1e9
}

// overflowSeconds reports whether v, trimmed, is 1*DIGIT too large for a
// time.Duration of seconds, so it must give the largest wait.
func overflowSeconds(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	digits := strings.TrimLeft(v, "0")
	return len(digits) > 10 || len(digits) == 10 && digits > "9223372036"
}

// checkHint asserts the invariants every hint parser keeps.
func checkHint(t *testing.T, what string, d time.Duration, ok bool) {
	t.Helper()
	if ok && d < 0 {
		t.Fatalf("%s: ok with negative wait %v", what, d)
	}
	if !ok && d != 0 {
		t.Fatalf("%s: not ok but wait %v", what, d)
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, seed := range [][2]string{
		{"120", ""},
		{"0", ""},
		{" 5 ", ""},
		{"-5", ""},
		{"1.5", ""},
		{"99999999999999999999", ""},
		{"9223372036", ""},
		{"9223372037", ""},
		{"9223372036854775808", ""},
		{"Sat, 28 Nov 2326 12:00:00 GMT", ""},
		{"000000000000000000000120", ""},
		{"Sat, 28 Nov 2026 12:02:00 GMT", ""},
		{"Saturday, 28-Nov-26 12:02:00 GMT", ""},
		{"Sat Nov 28 12:02:00 2026", ""},
		{"Sat, 28 Nov 2026 11:52:00 GMT", "Sat, 28 Nov 2026 11:50:00 GMT"},
		{"Sat, 28 Nov 2026 12:02:00 GMT", "yesterday"},
		{"Fri, 31 Dec 9999 23:59:59 GMT", ""},
		{"Sat, 28 Nov 2026 12:02:00 GMT", "Mon, 01 Jan 0001 00:00:00 GMT"},
		{"30", "Sat, 28 Nov 2026 11:00:00 GMT"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, value, date string) {
		h := http.Header{"Retry-After": {value}}
		if date != "" {
			h["Date"] = []string{date}
		}
		d, ok := classify.RetryAfter(h, now)
		checkHint(t, "RetryAfter", d, ok)

		// WaitHint with no other header gives the same answer.
		wd, wok := classify.WaitHint(h, now)
		if wd != d || wok != ok {
			t.Fatalf("WaitHint = %v, %v; RetryAfter = %v, %v", wd, wok, d, ok)
		}

		// delay-seconds is exact, whatever the Date header says, and a
		// count too long for a Duration is the largest one, never dropped.
		if n, small := delaySeconds(value); small {
			if !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("Retry-After %q = %v, %v; want %ds", value, d, ok, n)
			}
		}
		if overflowSeconds(value) && (!ok || d != math.MaxInt64) {
			t.Fatalf("Retry-After %q = %v, %v; want the largest Duration", value, d, ok)
		}

		// An HTTP-date, with no Date header, is measured from now.
		if date == "" {
			if at, err := http.ParseTime(strings.TrimSpace(value)); err == nil {
				if at.Year() > 1800 && at.Year() < 2200 {
					want := max(at.Sub(now), 0)
					if !ok || d != want {
						t.Fatalf("Retry-After %q = %v, %v; want %v", value, d, ok, want)
					}
				}
				if at.Year() > 2400 && (!ok || d != math.MaxInt64) {
					t.Fatalf("Retry-After %q = %v, %v; want the largest Duration", value, d, ok)
				}
			}
		}
	})
}

func FuzzRateLimit(f *testing.F) {
	for _, seed := range [][2]string{
		{`"default";r=0;t=30`, ""},
		{`"default";r=0;t=0`, ""},
		{"limit=10, remaining=0, reset=7", ""},
		{`"day";r=100, "minute";r=0;t=12`, ""},
		{`"default";r=0;t=-1`, "40"},
		{`"default";r=0;t=1.5`, ""},
		{`"default";r=0;t=99999999999999999999`, ""},
		{"", "9223372037"},
		{";;;,,,===", "x"},
		{"", "40"},
		{"", " 40 "},
		{"", "-40"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, ratelimit, reset string) {
		h := http.Header{"Ratelimit": {ratelimit}, "Ratelimit-Reset": {reset}}
		d, ok := classify.RateLimitReset(h)
		checkHint(t, "RateLimitReset", d, ok)

		// RateLimit-Reset alone, in delay-seconds, is exact.
		if n, small := delaySeconds(reset); small {
			alone := http.Header{"Ratelimit-Reset": {reset}}
			if d, ok := classify.RateLimitReset(alone); !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("RateLimit-Reset %q = %v, %v; want %ds", reset, d, ok, n)
			}
			// And so is the same value as an exhausted policy's t.
			policy := http.Header{"Ratelimit": {`"default";r=0;t=` + strings.TrimSpace(reset)}}
			if d, ok := classify.RateLimitReset(policy); !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("RateLimit t=%q = %v, %v; want %ds", reset, d, ok, n)
			}
		}

		// RateLimit-Reset alone, too long for a Duration, is the largest.
		if overflowSeconds(reset) {
			alone := http.Header{"Ratelimit-Reset": {reset}}
			if d, ok := classify.RateLimitReset(alone); !ok || d != math.MaxInt64 {
				t.Fatalf("RateLimit-Reset %q = %v, %v; want the largest Duration", reset, d, ok)
			}
		}

		// WaitHint agrees when nothing takes precedence.
		if wd, wok := classify.WaitHint(h, now); wd != d || wok != ok {
			t.Fatalf("WaitHint = %v, %v; RateLimitReset = %v, %v", wd, wok, d, ok)
		}
	})
}

func FuzzXRateLimitReset(f *testing.F) {
	for _, seed := range []struct {
		value string
		skew  int64
	}{
		{"90", 0},
		{"0", 0},
		{" 90 ", 0},
		{"999999999", 0},
		{"1000000000", 0},
		{unix(90 * time.Second), 0},
		{unix(-100 * time.Second), 0},
		{strconv.FormatInt(now.UnixMilli(), 10), 0},
		{"9223372036854775807", 0},
		{"-5", 0},
		{"1.5", 0},
		{"99999999999999999999", 0},
		{"10000000000000000", 0},
		{strconv.FormatInt(now.Unix()+300*365*24*3600, 10), 0},
		{unix(90 * time.Second), -1 << 40},
		{unix(90 * time.Second), 1 << 40},
	} {
		f.Add(seed.value, seed.skew)
	}
	f.Fuzz(func(t *testing.T, value string, skew int64) {
		// skew moves the local clock by up to about ±68 years.
		at := now.Add(time.Duration(skew%(1<<31)) * time.Second)
		h := http.Header{"X-Ratelimit-Reset": {value}}
		d, ok := classify.XRateLimitReset(h, at)
		checkHint(t, "XRateLimitReset", d, ok)

		if n, small := delaySeconds(value); small {
			var want time.Duration
			if n < 1_000_000_000 {
				want = time.Duration(n) * time.Second // a count of seconds
			} else {
				want = max(time.Unix(n, 0).Sub(at), 0) // a Unix timestamp
			}
			if !ok || d != want {
				t.Fatalf("X-RateLimit-Reset %q at %v = %v, %v; want %v", value, at, d, ok, want)
			}
		}

		if wd, wok := classify.WaitHint(h, at); wd != d || wok != ok {
			t.Fatalf("WaitHint = %v, %v; XRateLimitReset = %v, %v", wd, wok, d, ok)
		}
	})
}

func FuzzWaitHint(f *testing.F) {
	f.Add("3", `"default";r=0;t=30`, "40", "90", "")
	f.Add("soon", `"default";r=0;t=30`, "", "90", "")
	f.Add("-5", "", "40", "90", "")
	f.Add("Sat, 28 Nov 2026 11:52:00 GMT", "", "", "", "Sat, 28 Nov 2026 11:50:00 GMT")
	f.Add("", "t=x", "x", unix(90*time.Second), "")
	f.Fuzz(func(t *testing.T, retryAfter, ratelimit, ratelimitReset, xReset, date string) {
		h := http.Header{}
		for name, v := range map[string]string{
			"Retry-After": retryAfter, "Ratelimit": ratelimit, "Ratelimit-Reset": ratelimitReset,
			"X-Ratelimit-Reset": xReset, "Date": date,
		} {
			if v != "" {
				h[name] = []string{v}
			}
		}
		d, ok := classify.WaitHint(h, now)
		checkHint(t, "WaitHint", d, ok)

		// Precedence: the first parser that gives a value decides.
		want, wantOK := classify.RetryAfter(h, now)
		if !wantOK {
			want, wantOK = classify.RateLimitReset(h)
		}
		if !wantOK {
			want, wantOK = classify.XRateLimitReset(h, now)
		}
		if d != want || ok != wantOK {
			t.Fatalf("WaitHint = %v, %v; want %v, %v", d, ok, want, wantOK)
		}
	})
}

// errDialSkipped is what FuzzRequestProblem's transport dials into: a
// request that reaches the dial was accepted by net/http.
var errDialSkipped = errors.New("fuzz: dial skipped")

// FuzzRequestProblem checks RequestProblem's header validation against
// net/http's own: a header net/http refuses before dialling must be a
// problem, and a header it accepts must not be.
func FuzzRequestProblem(f *testing.F) {
	for _, seed := range [][2]string{
		{"X-Note", "ok"},
		{"Bad Name", "v"},
		{"Bad:Name", "v"},
		{"", "v"},
		{"Héader", "v"},
		{"X-!#$%&'*+-.^_`|~09azAZ", "v"},
		{"X-Note", "a\nInjected: yes"},
		{"X-Note", "a\rb"},
		{"X-Note", "a\x00b"},
		{"X-Note", "a\x7fb"},
		{"X-Note", "a\tb"},
		{"X-Note", "café"},
		{"X-Note", "\xff\xfe"},
	} {
		f.Add(seed[0], seed[1])
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errDialSkipped
		},
	}
	f.Cleanup(tr.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, name, value string) {
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[name] = []string{value}
		problem := classify.RequestProblem(req)

		resp, err := tr.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
			t.Fatal("got a response without a connection")
		}
		accepted := errors.Is(err, errDialSkipped)
		if accepted != (problem == "") {
			t.Fatalf("header %q: %q: RequestProblem = %q, net/http: %v", name, value, problem, err)
		}
		if !accepted {
			v := classify.Classify(req, nil, err)
			if v.Outcome != classify.Final || v.Reason != classify.ReasonInvalidRequest {
				t.Fatalf("header %q: %q: net/http error %v classified %+v", name, value, err, v)
			}
		}
	})
}
