package main

import (
	"fmt"
	"time"
)

// kind is what the scripted server does during a phase.
type kind int

const (
	healthy   kind = iota // every request answered 200
	outage                // every request answered 503, no wait hint
	rateLimit             // a token bucket: over it, 429 or 503 with Retry-After: 1
	flaky                 // 30 % of requests answered 503, no hint
	resets                // 30 % of connections reset by toxiproxy
)

// phase is one step of the script.
type phase struct {
	name string
	desc string
	kind kind
	dur  time.Duration
}

// schedule is the script: phases back to back from offset 0. The last
// phase goes on after its end, so an attempt that arrives late (a retry of
// a call begun in the last phase) still has a phase.
type schedule []phase

// defaultPhase is the length of a phase at scale 1, by kind: the outage
// is long enough for a breaker's open time to double.
var defaultPhase = map[kind]time.Duration{
	healthy:   5 * time.Second,
	outage:    10 * time.Second,
	rateLimit: 8 * time.Second,
	flaky:     8 * time.Second,
	resets:    8 * time.Second,
}

// newSchedule returns the demo's script with every phase's length
// multiplied by scale (which must be positive).
func newSchedule(scale float64) (schedule, error) {
	if !(scale > 0) || scale > 100 {
		return nil, fmt.Errorf("demo: scale %v is not in (0, 100]", scale)
	}
	steps := []struct {
		name, desc string
		kind       kind
		last       bool
	}{
		{"healthy", "every request answered 200", healthy, false},
		{"outage", "every request answered 503, no Retry-After", outage, false},
		{"ratelimit", "over half the offered rate: 429 or 503 with Retry-After: 1", rateLimit, false},
		{"flaky", "30 % of requests answered 503 at random", flaky, false},
		{"resets", "30 % of connections reset by toxiproxy, one request per connection", resets, false},
		{"recovered", "every request answered 200 again", healthy, true},
	}
	s := make(schedule, 0, len(steps))
	for _, st := range steps {
		d := time.Duration(float64(defaultPhase[st.kind]) * scale)
		if st.last {
			d = time.Duration(float64(8*time.Second) * scale)
		}
		if d < 10*time.Millisecond {
			return nil, fmt.Errorf("demo: scale %v makes the %s phase %v long (at least 10ms)", scale, st.name, d)
		}
		s = append(s, phase{name: st.name, desc: st.desc, kind: st.kind, dur: d})
	}
	return s, nil
}

// total is the length of the whole script.
func (s schedule) total() time.Duration {
	var t time.Duration
	for _, p := range s {
		t += p.dur
	}
	return t
}

// start is the offset at which phase i begins.
func (s schedule) start(i int) time.Duration {
	var t time.Duration
	for _, p := range s[:i] {
		t += p.dur
	}
	return t
}

// at returns the index of the phase running at offset d: 0 before the
// start, the last phase after the end.
func (s schedule) at(d time.Duration) int {
	var end time.Duration
	for i, p := range s {
		end += p.dur
		if d < end {
			return i
		}
	}
	return len(s) - 1
}

// index returns the position of the first phase of kind k, or -1.
func (s schedule) index(k kind) int {
	for i, p := range s {
		if p.kind == k {
			return i
		}
	}
	return -1
}
