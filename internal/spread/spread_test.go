package spread

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHint(t *testing.T) {
	for _, c := range []struct {
		name    string
		d, base time.Duration
		r       float64
		want    time.Duration
	}{
		{"a tenth of the hint", 10 * time.Second, 100 * time.Millisecond, 0.5, 500 * time.Millisecond},
		{"base when larger", time.Second, 200 * time.Millisecond, 0.5, 100 * time.Millisecond},
		{"r of zero", time.Second, time.Second, 0, 0},
		{"negative r", time.Second, time.Second, -1, 0},
		{"r clamped below one", 10 * time.Second, 0, 2, 999999999},
		{"nothing to spread", 0, 0, 0.5, 0},
	} {
		if got := Hint(c.d, c.base, c.r); got != c.want {
			t.Errorf("%s: Hint(%v, %v, %v) = %v, want %v", c.name, c.d, c.base, c.r, got, c.want)
		}
	}
}
