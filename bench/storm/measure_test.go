package storm

import (
	"strings"
	"testing"
	"time"
)

// bucketsOf builds buckets from success shares per Window from the
// start, each window holding 10 calls.
func bucketsOf(shares []float64) []bucket {
	w := ticks(Window)
	b := make([]bucket, len(shares)*w)
	for i, s := range shares {
		b[i*w].started = 10
		b[i*w].okByStart = int64(s*10 + 0.5)
	}
	return b
}

func TestRecovery(t *testing.T) {
	c := Cell{Warmup: 4 * time.Second, TriggerFor: 2 * time.Second, Patience: 5 * time.Second,
		Stable: time.Second, Deadline: time.Second}
	// Windows 0..7 are the warm-up (4..5 are within the deadline of the
	// trigger), 8..11 the trigger, 12.. after the removal.
	healthy := []float64{1, 1, 1, 1, 1, 1, 0, 0}
	trig := []float64{0, 0, 0, 0}
	for _, tc := range []struct {
		name  string
		after []float64
		want  time.Duration
		ok    bool
	}{
		{"at once", []float64{1, 1, 1, 1}, 0, true},
		{"one bad window", []float64{0, 1, 1, 1}, Window, true},
		{"a relapse restarts the count", []float64{1, 0, 1, 0.9, 1, 1}, 4 * Window, true},
		{"90 % is not good enough", []float64{0.9, 1, 1, 1}, Window, true},
		{"empty windows are good", []float64{0, -1, 1}, Window, true},
		{"not yet known", []float64{0, 1}, 0, false},
		{"never", []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}, 0, false},
		{"at the patience's end", []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, 10 * Window, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shares := append(append(append([]float64{}, healthy...), trig...), tc.after...)
			b := bucketsOf(shares)
			for i, s := range shares {
				if s < 0 {
					b[i*ticks(Window)].started, b[i*ticks(Window)].okByStart = 0, 0
				}
			}
			got, ok := recovery(b, c, len(b))
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("recovery = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseGrid(t *testing.T) {
	g, err := ParseGrid("libs=plain,rebound rho=0.5,0.9 n=10 trigger=outage,latency retryafter=1s")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Libraries) != 2 || len(g.Rhos) != 2 || len(g.Clients) != 1 || len(g.Triggers) != 2 || g.Triggers[1] != SlowService || g.Base.Server.RetryAfter != time.Second {
		t.Fatalf("ParseGrid gave %+v", g)
	}
	if n := len(g.Cells()); n != 8 {
		t.Errorf("%d cells, want 8", n)
	}
	if g, err := ParseGrid(""); err != nil || len(g.Cells()) != 300 {
		t.Errorf("the full grid: %d cells, %v; want 300", len(g.Cells()), err)
	}
	for _, bad := range []string{"libs=grpc", "rho=x", "rho=0", "rho=NaN", "n=0", "n=1e9", "trigger=fire", "depth=3", "retryafter=-1s", "retryafter=soon", "workers=0", "skipgone=maybe", "rho", "rho="} {
		if _, err := ParseGrid(bad); err == nil || !strings.HasPrefix(err.Error(), "storm: ") {
			t.Errorf("ParseGrid(%q) = %v, want a storm: error", bad, err)
		}
	}
}
