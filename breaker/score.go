package breaker

import (
	"math"
	"strconv"
)

// The trip rule runs two sequential probability ratio tests side by side
// (see the package doc for the math). Each test keeps its log-likelihood
// ratio S in fixed point, in units of 1/scale of a nat, as x = S + credit,
// so that x is never negative: x = credit is a fresh client (S = 0), x = 0
// is the floor (S = -credit), and x >= top trips.
//
// Both x and the time of the last outcome share one 64-bit word, updated
// with compare-and-swap, so a breaker's whole closed-state memory changes
// in one atomic step:
//
//	bits 63..32  time of the last outcome, in units of Window/quietUnits
//	bits 31..16  x of the degraded-host test
//	bits 15..0   x of the dead-host test
const (
	scale      = 128 // fixed-point units per nat
	xBits      = 16
	xMask      = 1<<xBits - 1
	quietUnits = 16 // time units per Window
)

// sprt is one sequential test, in fixed point. A failure adds up, a
// success subtracts down (never below 0), and x >= top trips.
type sprt struct {
	up, down    uint32
	credit, top uint32
	p0, p1      float64 // the failure rates it tells apart, for docs and reasons
}

// newSPRT returns the test of failure rate p0 against p1 (0 < p0 < p1 < 1)
// that trips after gain nats of evidence from a fresh start, with credit
// nats of credit at most. The failure step is rounded down and the success
// step up, so the fixed-point ratio is never larger than the exact one and
// every bound of the package doc holds for it.
func newSPRT(p0, p1, gain, credit float64) sprt {
	t := sprt{
		up:     uint32(math.Floor(scale * math.Log(p1/p0))),
		down:   uint32(math.Ceil(scale * math.Log((1-p0)/(1-p1)))),
		credit: uint32(math.Round(scale * credit)),
		p0:     p0,
		p1:     p1,
	}
	t.up = max(t.up, 1)
	t.top = t.credit + uint32(math.Ceil(scale*gain))
	return t
}

// step returns x after one outcome, capped at top.
func (t *sprt) step(x uint32, failed bool) uint32 {
	if failed {
		return min(x+t.up, t.top)
	}
	if x < t.down {
		return 0
	}
	return x - t.down
}

// rule is the trip rule: a test for a dead host and one for a degraded
// host. Either trips the breaker.
type rule struct {
	dead, degraded sprt
}

// Test parameters (see the package doc).
const (
	deadMargin     = 0.05 // the dead-host test's p0 is the tolerated rate plus this
	deadRate       = 0.95 // ... and its p1
	deadCredit     = 6    // nats of credit a healthy stream earns in the dead-host test
	degradedShare  = 2.0 / 7
	degradedGain   = 9  // nats of evidence that trip the degraded-host test
	degradedCredit = 10 // nats of credit in the degraded-host test
)

// newRule returns the trip rule for a tolerated failure rate p0 in
// [0.01, 0.8] and a run of k failures, in [1, 100], that trips a fresh
// host.
func newRule(p0 float64, k int) rule {
	q0 := p0 + deadMargin
	dead := newSPRT(q0, deadRate, 0, deadCredit)
	// Exactly k failures from a fresh start reach top, k-1 do not.
	dead.top = dead.credit + uint32(k)*dead.up
	degraded := newSPRT(p0, p0+(1-p0)*degradedShare, degradedGain, degradedCredit)
	// Nor may the degraded-host test trip a fresh host on fewer than k
	// failures, which it would for a low p0.
	degraded.top = max(degraded.top, degraded.credit+uint32(k-1)*degraded.up+1)
	return rule{dead: dead, degraded: degraded}
}

// fresh returns the word of a client that has seen nothing, at time unit now.
func (r *rule) fresh(now uint32) uint64 {
	return pack(r.dead.credit, r.degraded.credit, now)
}

// pack builds a score word.
func pack(dead, degraded, now uint32) uint64 {
	return uint64(now)<<(2*xBits) | uint64(degraded)<<xBits | uint64(dead)
}

// unpack splits a score word.
func unpack(w uint64) (dead, degraded, now uint32) {
	return uint32(w & xMask), uint32(w >> xBits & xMask), uint32(w >> (2 * xBits))
}

// next returns the score word after an outcome (failed or not) at time
// unit now, and which test, if any, trips: 0 for none, 1 for the dead-host
// test, 2 for the degraded-host test. It is a pure function: the breaker
// stores its result with compare-and-swap, and the simulation in the tests
// runs it alone.
//
// A host silent for a Window or more (quietUnits time units; the
// difference is taken modulo 2^32, so a silence of 2^31 units or more,
// 4 years with the default Window, may read as short and merely keep the
// credit) loses its credit: the dead-host test keeps its evidence of failure but none of
// success, and the degraded-host test, which judges a busy stream, starts
// afresh.
func (r *rule) next(w uint64, failed bool, now uint32) (uint64, int) {
	return r.nextOverlapped(w, failed, false, now)
}

// nextOverlapped is next for an outcome that may have overlapped a
// success: a failed attempt during which another attempt to the host
// succeeded. A dead host gives no successes, so such a failure is no
// evidence that the host is dead, and the dead-host test skips it; the
// degraded-host test, which judges the share of failures, counts it.
// Skipping a failure only ever lowers a test's walk, so the false-trip
// bound holds as it is.
func (r *rule) nextOverlapped(w uint64, failed, overlapped bool, now uint32) (uint64, int) {
	dead, degraded, last := unpack(w)
	switch since := int32(now - last); {
	case since < 0:
		// Reported late: its goroutine read the clock, then another
		// outcome with a later time got in first. Keep the later time.
		now = last
	case since >= quietUnits:
		dead = max(dead, r.dead.credit)
		degraded = r.degraded.credit
	}
	if !failed || !overlapped {
		dead = r.dead.step(dead, failed)
	}
	degraded = r.degraded.step(degraded, failed)
	trip := 0
	switch {
	case dead >= r.dead.top:
		trip = 1
	case degraded >= r.degraded.top:
		trip = 2
	}
	return pack(dead, degraded, now), trip
}

// evidence returns the larger of the two tests' log-likelihood ratios as
// a share of its trip threshold: 0 for a fresh client, 1 at a trip,
// negative for a host with credit.
func (r *rule) evidence(w uint64) float64 {
	dead, degraded, _ := unpack(w)
	share := func(t *sprt, x uint32) float64 {
		return (float64(x) - float64(t.credit)) / float64(t.top-t.credit)
	}
	return max(share(&r.dead, dead), share(&r.degraded, degraded))
}

// falseTripBound returns an upper bound on the probability that a fresh
// closed breaker trips within n outcomes when each call fails
// independently with probability p, and no Window passes without an
// outcome (a busy host); 1 when the rule gives no bound for p.
func (r *rule) falseTripBound(p float64, n int) float64 {
	return min(r.dead.bound(p, n)+r.degraded.bound(p, n), 1)
}

// bound is falseTripBound for one test. With steps a (failure) and -b
// (success), e^(θS) is a martingale for the θ > 0 that solves
// p·e^(θa) + (1-p)·e^(-θb) = 1, which exists when the walk drifts down
// (pa < (1-p)b). By Ville's inequality the walk from the fresh start
// reaches the threshold h with probability at most e^(-θh); after each of
// the at most n times it sits on the floor it must climb h + credit, with
// probability at most e^(-θ(h+credit)).
func (t *sprt) bound(p float64, n int) float64 {
	a, b := float64(t.up)/scale, float64(t.down)/scale
	if p <= 0 {
		return 0
	}
	if p >= 1 || p*a >= (1-p)*b {
		return 1
	}
	f := func(th float64) float64 { return p*math.Exp(th*a) + (1-p)*math.Exp(-th*b) - 1 }
	// f(0) = 0, f falls then rises: find where it crosses zero again.
	lo, hi := 0.0, 1.0
	for f(hi) < 0 {
		lo, hi = hi, 2*hi
	}
	for range 100 {
		m := (lo + hi) / 2
		if f(m) < 0 {
			lo = m
		} else {
			hi = m
		}
	}
	theta := lo // the lower end keeps the bound an upper bound
	h := float64(t.top-t.credit) / scale
	c := float64(t.credit) / scale
	return math.Exp(-theta*h) + float64(n)*math.Exp(-theta*(h+c))
}

// reasonProbe is the StateChange reason of a breaker that closes.
const reasonProbe = "probe succeeded"

// reason returns a trip's reason in plain words, with its counts: "10 of
// the last 10 attempts failed", "the last 17 attempts failed (17 of the
// last 37)". Counts unknown (a zero trip) read as the test's words alone.
func (t trip) reason() string {
	if t.attempts == 0 {
		switch t.test {
		case 1:
			return "nearly every recent attempt failed"
		case 2:
			return "a sustained share of recent attempts failed"
		}
		return ""
	}
	counts := strconv.Itoa(t.failed) + " of the last " + strconv.Itoa(t.attempts)
	if t.test != 1 || t.failed == t.attempts || t.streak < 2 {
		return counts + " attempts failed"
	}
	return "the last " + strconv.Itoa(t.streak) + " attempts failed (" + counts + ")"
}

// detectBound returns a lower bound on the probability that this test
// alone trips a fresh client within n calls when each call fails
// independently with probability p: by Hoeffding's inequality, the sum of
// n steps (which the floor only lifts) falls short of the threshold h with
// probability at most exp(-2n(d - h/n)² / (a+b)²), d being the mean step.
// It is 0 when the mean step is too small to reach h in n calls.
func (t *sprt) detectBound(p float64, n int) float64 {
	a, b := float64(t.up)/scale, float64(t.down)/scale
	d := p*a - (1-p)*b
	h := float64(t.top-t.credit) / scale
	gap := d - h/float64(n)
	if gap <= 0 {
		return 0
	}
	return 1 - math.Exp(-2*float64(n)*gap*gap/((a+b)*(a+b)))
}
