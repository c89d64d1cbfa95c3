package clock

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNowFollowsTheMonotonicClock(t *testing.T) {
	a, b := Now(), time.Now()
	if d := b.Sub(a); d < 0 || d > time.Second {
		t.Fatalf("Now and time.Now differ by %v", d)
	}
}

func TestNowFollowsSynctestTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := Now()
		time.Sleep(90 * time.Second)
		if d := Now().Sub(a); d != 90*time.Second {
			t.Fatalf("elapsed %v in the bubble, want 90s", d)
		}
	})
}

func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now()
	}
}
