package admission

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzSignal feeds hostile headers (negative, overflowing, malformed,
// many values, huge partition keys) through a response to a state: it
// must never panic, never pause a key past MaxWait plus its spread, and
// never set a negative or non-finite pace.
func FuzzSignal(f *testing.F) {
	for _, seed := range [][3]string{
		{"429", "Retry-After", "1"},
		{"503", "Retry-After", "-5"},
		{"503", "Retry-After", "99999999999999999999"},
		{"503", "Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"},
		{"200", "RateLimit", `"default";r=0;t=5`},
		{"200", "RateLimit", `"default";r=50;t=0`},
		{"200", "RateLimit", `"default";r=1073741824;t=1, "x";r=1;t=86400`},
		{"200", "RateLimit", `"default";r=5;t=5;pk=:` + strings.Repeat("A", 1<<20) + `:`},
		{"429", "X-RateLimit-Reset", "1000000000000"},
		{"429", "X-RateLimit-Remaining", "0\nX-RateLimit-Reset: 5"},
		{"200", "RateLimit-Remaining", "1"},
		{"999", "Retry-After", "3"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, code, name, value string) {
		a := New(Config{MaxWait: 10 * time.Second})
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.test/", nil)
		status := 0
		for _, c := range code {
			if c >= '0' && c <= '9' && status < 1000 {
				status = status*10 + int(c-'0')
			}
		}
		h := http.Header{}
		for v := range strings.SplitSeq(value, "\n") {
			h.Add(name, v)
		}
		now := time.Now()
		for range 3 {
			turn, _, err := a.Take(req)
			if err != nil {
				return
			}
			turn.Done(&http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: req}, nil)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, hs := range a.hosts {
			limit := now.Add(10*time.Second + time.Second + time.Second) // MaxWait, its spread, slack
			if hs.pauseUntil.After(limit) {
				t.Fatalf("host paused until %v", hs.pauseUntil.Sub(now))
			}
			for _, st := range hs.creds {
				if st.pauseUntil.After(limit) {
					t.Fatalf("key paused until %v", st.pauseUntil.Sub(now))
				}
				if st.rate < 0 || st.rate != st.rate || st.quotaRate < 0 || st.quotaRate != st.quotaRate {
					t.Fatalf("pace %v, quota pace %v", st.rate, st.quotaRate)
				}
			}
		}
	})
}
