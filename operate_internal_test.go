package rebound

import (
	"testing"
	"time"

	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/transport"
)

func TestShortDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                       "0s",
		999:                                     "999ns",
		4718592 * time.Nanosecond:               "4.72ms",
		73728 * time.Nanosecond:                 "73.7µs",
		1500 * time.Millisecond:                 "1.5s",
		14*time.Minute + 54345*time.Millisecond: "14m54s",
		2*time.Hour + 1234*time.Millisecond:     "2h0m1s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSameValue(t *testing.T) {
	f := func(breaker.StateChange) {}
	g := func(breaker.StateChange) {}
	obs := transport.ObserverFunc(func(transport.Event) {})
	hedge := &transport.HedgeConfig{MaxHedges: 2}
	for name, c := range map[string]struct {
		a, b Policy
		same bool
	}{
		"zero":                  {Policy{}, Policy{}, true},
		"a field":               {Policy{DisableBudget: true}, Policy{}, false},
		"one func":              {Policy{Breaker: breaker.Config{OnStateChange: f}}, Policy{Breaker: breaker.Config{OnStateChange: f}}, true},
		"two funcs":             {Policy{Breaker: breaker.Config{OnStateChange: f}}, Policy{Breaker: breaker.Config{OnStateChange: g}}, false},
		"a func and nil":        {Policy{Breaker: breaker.Config{OnStateChange: f}}, Policy{}, false},
		"one observer":          {Policy{Retry: transport.Config{Observer: obs}}, Policy{Retry: transport.Config{Observer: obs}}, true},
		"an observer and nil":   {Policy{Retry: transport.Config{Observer: obs}}, Policy{}, false},
		"one pointer":           {Policy{Retry: transport.Config{Hedge: hedge}}, Policy{Retry: transport.Config{Hedge: hedge}}, true},
		"equal pointees":        {Policy{Retry: transport.Config{Hedge: hedge}}, Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{MaxHedges: 2}}}, true},
		"different pointees":    {Policy{Retry: transport.Config{Hedge: hedge}}, Policy{Retry: transport.Config{Hedge: &transport.HedgeConfig{MaxHedges: 3}}}, false},
		"a pointer and nil":     {Policy{Retry: transport.Config{Hedge: hedge}}, Policy{}, false},
		"equal retryable lists": {Policy{Retry: transport.Config{MaxAttempts: 3}}, Policy{Retry: transport.Config{MaxAttempts: 3}}, true},
	} {
		if got := sameValue(c.a, c.b); got != c.same {
			t.Errorf("%s: sameValue = %v, want %v", name, got, c.same)
		}
	}
}
