package rebound

import (
	"testing"
	"time"
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
