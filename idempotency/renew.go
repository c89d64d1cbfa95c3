package idempotency

import (
	"errors"
	"sync"
	"time"
)

// renewer renews the leases of a middleware's running handlers.
//
// Most handlers end long before their first renewal is due, so a handler
// that starts costs a lock and a list operation, not a timer of its own
// (which costs several times more): one shared timer serves the list. It
// is armed when a handler joins an empty list, for that handler's first
// renewal, and when it fires it hands every listed handler a timer of its
// own, which renews that handler's lease from then on. The shared timer
// never calls the store, so a slow store delays no one else's renewal.
//
// Each handler's renewals run on its own timer, so they run concurrently
// across handlers, at most one at a time per handler: the renewals in
// flight are bounded by the handlers running, whose own Reserve calls
// the store already served at that concurrency. A renewal starts an
// interval (a third of the lease) after the start of the previous call
// that extended the lease (the Reserve, for the first), or at once when
// that call took longer; a quarter interval after a failure. So the
// calls that extend a lease follow each other by at most max(lease/3, the
// store's latency), and a store whose calls take effect at the same point
// of every call (at its start, as PostgreSQL's now() is the statement's,
// or at its end) and take less than the lease never lets a lease end
// while its handler runs, unless it fails for about a lease.
// TestRenewalSlowStore checks both with a store that takes 90 % of the
// lease per call. (A store whose Reserve took effect at its start and
// whose Renew at its end, each after most of a lease, could still lose
// one: no schedule can know.)
//
// The shared timer is made, and re-armed, only outside testing/synctest
// bubbles: a bubble's timer must never be touched from outside it, and
// one left pending when its bubble ends never fires. A bubble's clock
// starts in 2000, so a handler that starts while the clock reads before
// 2001 gets a timer of its own at once, made and stopped by its own
// goroutine.
type renewer struct {
	m *middleware

	mu      sync.Mutex
	running *execution // listed executions, newest first
	timer   *time.Timer
	armed   bool      // timer will fire
	fireAt  time.Time // when it fires, while armed
}

// bubbleClockEnd is the instant before which a clock is taken to be a
// testing/synctest bubble's (which starts at midnight UTC, 2000-01-01).
var bubbleClockEnd = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// add starts renewing x's lease, whose reservation was asked for at
// reserved: its first renewal is due an interval after that.
func (rn *renewer) add(x *execution, reserved time.Time) {
	now := time.Now()
	due := reserved.Add(rn.m.renewInterval())
	if now.Before(bubbleClockEnd) {
		x.startAlone(due.Sub(now))
		return
	}
	rn.mu.Lock()
	switch {
	case !rn.armed:
		rn.armed, rn.fireAt = true, due
		if rn.timer == nil {
			rn.timer = time.AfterFunc(due.Sub(now), rn.sweep)
		} else {
			rn.timer.Reset(due.Sub(now))
		}
	case rn.fireAt.After(due):
		// The shared timer fires after x's first renewal is due (its
		// Reserve was slow): x gets a timer of its own now.
		rn.mu.Unlock()
		x.startAlone(due.Sub(now))
		return
	}
	x.prev, x.next = nil, rn.running
	if rn.running != nil {
		rn.running.prev = x
	}
	rn.running = x
	x.listed = true
	rn.mu.Unlock()
}

// startAlone arms x's own renewal timer to fire after d (at once when d
// is not positive).
func (x *execution) startAlone(d time.Duration) {
	x.mu.Lock() // x.renewAlone reads x.timer
	x.timer = time.AfterFunc(max(d, 0), x.renewAlone)
	x.mu.Unlock()
}

// remove stops renewing x's lease; once it returns, no renewal of x is
// running or will run.
func (rn *renewer) remove(x *execution) {
	rn.mu.Lock()
	if x.listed {
		if x.prev != nil {
			x.prev.next = x.next
		} else {
			rn.running = x.next
		}
		if x.next != nil {
			x.next.prev = x.prev
		}
		x.prev, x.next, x.listed = nil, nil, false
	}
	rn.mu.Unlock()
	x.mu.Lock()
	x.stopped = true
	t, inflight := x.timer, x.inflight
	x.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	if inflight != nil {
		<-inflight // a renewal of x in progress
	}
}

// sweep hands every listed execution a renewal timer of its own, firing
// at once, and empties the list.
func (rn *renewer) sweep() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for x := rn.running; x != nil; {
		next := x.next
		x.prev, x.next, x.listed = nil, nil, false
		x.startAlone(0)
		x = next
	}
	rn.running = nil
	rn.armed = false
}

// renewInterval is the time between renewals: a third of the lease, so
// that two can fail before it ends.
func (m *middleware) renewInterval() time.Duration {
	return max(m.cfg.Lease/3, time.Millisecond)
}

// renewAlone renews x's lease on x's own timer and re-arms it for an
// interval after this call started (a quarter interval after a failure),
// at once when that has passed.
//
// No lock is held during the store call (a goroutine waiting for a lock
// held across a slow call would stop a synctest bubble's clock): remove
// waits on x.inflight instead.
func (x *execution) renewAlone() {
	x.mu.Lock()
	if x.stopped || x.lost {
		x.mu.Unlock()
		return
	}
	done := make(chan struct{})
	x.inflight = done
	x.mu.Unlock()
	start := time.Now()
	err := x.m.store.Renew(x.storeCtx, x.skey, x.token, x.m.cfg.Lease)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.inflight = nil
	close(done)
	next := x.m.renewInterval()
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		x.lost = true
	default:
		// Try again sooner, but never later than the lease allows.
		next = max(next/4, time.Millisecond)
	}
	if err != nil {
		x.renewFails++
		if x.renewErr == nil {
			x.renewErr = err
		}
	}
	if !x.stopped && !x.lost {
		x.timer.Reset(max(next-time.Since(start), 0))
	}
}
