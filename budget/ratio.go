package budget

import (
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RatioConfig.
const (
	DefaultRatio        = 0.2
	DefaultWindow       = 10 * time.Second
	DefaultMinPerSecond = 10.0
)

// Upper bounds applied to RatioConfig's numbers, so that no setting can
// overflow the arithmetic. They are far beyond any useful value.
const (
	maxRatio        = 1e6
	maxMinPerSecond = 1e9
)

// RatioConfig configures a Ratio budget. The zero value is the default of
// every field: retries up to 20% of the requests of the last 10 s, plus 10
// retries per second.
type RatioConfig struct {
	// Ratio is the share of recent first attempts that may be retried:
	// 0.2 allows one retry for every five first attempts. Zero (or NaN)
	// means 0.2, the figure Finagle, Linkerd and Envoy converged on: at
	// 10%, a 10% failure rate already needs 11% retries and callers start
	// to see failures. Negative means none: only the floor remains.
	Ratio float64
	// Window is how far back first attempts and retries are counted.
	// Zero or negative means 10 s. It is divided into ten buckets, so the
	// window slides by a tenth of its length at a time.
	Window time.Duration
	// MinPerSecond is the floor: retries allowed per second of Window
	// whatever the traffic, so a quiet client can still retry. Zero (or
	// NaN) means 10; negative means no floor.
	MinPerSecond float64
}

// Ratio is a retry budget in the manner of Finagle and Linkerd: every first
// attempt deposits, every retry withdraws, and a retry is allowed while the
// retries of the window stay within Ratio times the window's first attempts
// plus a reserve of MinPerSecond × Window retries:
//
//	retries + 1 ≤ Ratio·firsts + MinPerSecond·Window/s
//
// Both counts are kept in ten time buckets that slide with the clock, so
// memory is constant and nothing is tracked per token. A retry that is
// allowed is counted in the same step, under one lock, so concurrent
// retries cannot overdraw the budget. Over any span of k windows the
// retries sent are then at most Ratio·firsts + k·MinPerSecond·Window/s.
// A deposit in the newest bucket, every first attempt of a busy client
// but the first of each bucket, takes no lock: one compare-and-swap of a
// word that holds the bucket's number and its deposits not yet added,
// which the next call that takes the lock adds to that bucket.
//
// The zero value is a budget with the default settings, ready to use. A
// Ratio is safe for concurrent use.
//
//	b := budget.NewRatio(budget.RatioConfig{Ratio: 0.1})
//	b.Deposit(time.Now())          // a first attempt
//	if b.Withdraw(time.Now()) {     // may we retry?
//		// send the retry
//	}
type Ratio struct {
	// fast is the lock-free deposit word: fastOpen, the low 31 bits of
	// the newest bucket's number (w.head) and the count of deposits made
	// in it without the lock. Zero, without fastOpen, while mu is held or
	// before the window starts: deposits then take the lock.
	fast    atomic.Uint64
	mu      sync.Mutex
	ratio   float64 // share of first attempts that may be retried, ≥ 0
	reserve float64 // MinPerSecond × Window, in retries, ≥ 0
	w       window  // a: first attempts, b: retries; zero width until set up
}

// The fields of Ratio.fast.
const (
	fastOpen     = 1 << 63
	fastTagShift = 32
	fastTagMask  = 1<<31 - 1
	fastCountMax = 1<<32 - 1
)

// NewRatio returns a Ratio budget configured by cfg, whose zero fields take
// the defaults.
func NewRatio(cfg RatioConfig) *Ratio {
	r := new(Ratio)
	r.setup(cfg)
	return r
}

// setup normalises cfg into r. r.mu must be held, or r not yet shared.
func (r *Ratio) setup(cfg RatioConfig) {
	r.ratio = floatOr(cfg.Ratio, DefaultRatio, maxRatio)
	win := durationOr(cfg.Window, DefaultWindow)
	r.w = newWindow(win)
	r.reserve = floatOr(cfg.MinPerSecond, DefaultMinPerSecond, maxMinPerSecond) * r.w.length().Seconds()
}

// lock takes r.mu, closes the lock-free path and adds the deposits it
// counted to the newest bucket, whose number its word holds.
func (r *Ratio) lock() {
	r.mu.Lock()
	if f := r.fast.Swap(0); f&fastOpen != 0 {
		n := int64(f & fastCountMax)
		r.w.a[r.w.cur] += n
		r.w.sumA += n
	}
	if r.w.width == 0 {
		r.setup(RatioConfig{})
	}
}

// unlock opens the lock-free path for deposits in the newest bucket and
// releases r.mu.
func (r *Ratio) unlock() {
	if r.w.started {
		r.fast.Store(fastOpen | uint64(r.w.head)&fastTagMask<<fastTagShift)
	}
	r.mu.Unlock()
}

// Deposit records a first attempt at now.
func (r *Ratio) Deposit(now time.Time) {
	n := now.UnixNano()
	if f := r.fast.Load(); f&fastOpen != 0 && f&fastCountMax != fastCountMax {
		// The width is fixed once the path is open. A bucket 2³¹
		// buckets away from the newest can pass for it: the deposit
		// is then counted in the newest bucket, as any other at an
		// instant before it is.
		if e := floorDiv(n, r.w.width); uint64(e)&fastTagMask == f>>fastTagShift&fastTagMask && r.fast.CompareAndSwap(f, f+1) {
			return
		}
	}
	r.lock()
	r.w.add(n, 1, 0)
	r.unlock()
}

// Withdraw reports whether a retry may be sent at now and, if so, records
// it, in one step.
func (r *Ratio) Withdraw(now time.Time) bool {
	n := now.UnixNano()
	r.lock()
	s := r.w.advance(n)
	ok := float64(r.w.sumB+1) <= r.ratio*float64(r.w.sumA)+r.reserve
	if ok {
		r.w.b[s]++
		r.w.sumB++
	}
	r.unlock()
	return ok
}

// Balance returns the retries the budget holds at now: Ratio·firsts +
// reserve − retries over the window. Withdraw succeeds while it is ≥ 1. It
// is never negative.
func (r *Ratio) Balance(now time.Time) float64 {
	n := now.UnixNano()
	r.lock()
	firsts, retries := r.w.sums(n)
	bal := r.ratio*float64(firsts) + r.reserve - float64(retries)
	r.unlock()
	return max(bal, 0)
}
