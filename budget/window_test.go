package budget

import (
	"testing"
	"time"
)

// t0 is an instant aligned on every bucket width used in these tests.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestWindowSlides(t *testing.T) {
	type op struct {
		at     time.Duration // offset from t0
		da, db int64
	}
	tests := []struct {
		name         string
		ops          []op
		at           time.Duration // when the sums are read
		wantA, wantB int64
	}{
		{name: "empty", at: 0, wantA: 0, wantB: 0},
		{name: "one bucket", ops: []op{{0, 3, 1}, {999 * time.Millisecond, 2, 0}}, at: 999 * time.Millisecond, wantA: 5, wantB: 1},
		{name: "whole window kept", ops: []op{{0, 1, 0}, {5 * time.Second, 1, 0}, {9 * time.Second, 1, 1}}, at: 9999 * time.Millisecond, wantA: 3, wantB: 1},
		{name: "oldest bucket forgotten", ops: []op{{0, 1, 0}, {5 * time.Second, 1, 0}, {9 * time.Second, 1, 1}}, at: 10 * time.Second, wantA: 2, wantB: 1},
		{name: "all forgotten after a window", ops: []op{{0, 4, 4}, {9 * time.Second, 1, 1}}, at: 19 * time.Second, wantA: 0, wantB: 0},
		{name: "long gap clears", ops: []op{{0, 4, 4}, {time.Hour, 1, 0}}, at: time.Hour, wantA: 1, wantB: 0},
		{name: "stale instant counts in newest bucket", ops: []op{{5 * time.Second, 1, 0}, {2 * time.Second, 1, 0}}, at: 14 * time.Second, wantA: 2, wantB: 0},
		{name: "stale instant forgotten with newest bucket", ops: []op{{5 * time.Second, 1, 0}, {2 * time.Second, 1, 0}}, at: 15 * time.Second, wantA: 0, wantB: 0},
		{name: "reading the past reads the present", ops: []op{{5 * time.Second, 2, 1}}, at: 0, wantA: 2, wantB: 1},
		{name: "slot reuse after wrap", ops: []op{{0, 1, 0}, {3 * time.Second, 1, 0}, {10 * time.Second, 5, 0}, {12 * time.Second, 1, 0}}, at: 12 * time.Second, wantA: 7, wantB: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(10 * time.Second)
			for _, o := range tt.ops {
				w.add(t0.Add(o.at).UnixNano(), o.da, o.db)
			}
			a, b := w.sums(t0.Add(tt.at).UnixNano())
			if a != tt.wantA || b != tt.wantB {
				t.Errorf("sums = (%d, %d), want (%d, %d)", a, b, tt.wantA, tt.wantB)
			}
		})
	}
}

func TestWindowBeforeEpoch(t *testing.T) {
	w := newWindow(10 * time.Second)
	base := time.Unix(-3, 0) // buckets must stay contiguous across zero
	w.add(base.UnixNano(), 1, 0)
	w.add(base.Add(5*time.Second).UnixNano(), 1, 0)
	if a, _ := w.sums(base.Add(9 * time.Second).UnixNano()); a != 2 {
		t.Errorf("sum at +9s = %d, want 2", a)
	}
	if a, _ := w.sums(base.Add(10 * time.Second).UnixNano()); a != 1 {
		t.Errorf("sum at +10s = %d, want 1", a)
	}
}

func TestFloorDiv(t *testing.T) {
	tests := []struct {
		name    string
		n, d, q int64
	}{
		{"positive", 7, 2, 3},
		{"exact", 6, 2, 3},
		{"negative", -7, 2, -4},
		{"negative exact", -6, 2, -3},
		{"zero", 0, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := floorDiv(tt.n, tt.d); got != tt.q {
				t.Errorf("floorDiv(%d, %d) = %d, want %d", tt.n, tt.d, got, tt.q)
			}
		})
	}
}

func TestNewWindowTiny(t *testing.T) {
	w := newWindow(time.Nanosecond)
	if w.width != 1 {
		t.Fatalf("width = %d, want 1", w.width)
	}
	w.add(100, 1, 0)
	if a, _ := w.sums(109); a != 1 {
		t.Errorf("sum within the window = %d, want 1", a)
	}
	if a, _ := w.sums(110); a != 0 {
		t.Errorf("sum after the window = %d, want 0", a)
	}
}
