package idempotency

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// renewer renews the leases of a middleware's running handlers. One timer
// serves them all: it is armed when a handler starts while none runs, and
// each time it fires it renews every running handler's lease and re-arms
// itself while any runs. So starting and ending a handler costs a lock and
// a list operation, not a timer of its own (which costs several times
// more), and a handler's first renewal comes at most a renewal interval (a
// third of the lease) after it starts.
//
// The shared timer is made, and re-armed, only outside testing/synctest
// bubbles: a bubble's timer must never be touched from outside it, and
// one left pending when its bubble ends never fires. A bubble's clock
// starts in 2000, so a handler that starts while the clock reads before
// 2001 gets a timer of its own instead, made and stopped by its own
// goroutine.
type renewer struct {
	m *middleware

	mu      sync.Mutex
	running *execution // list of running executions, newest first
	timer   *time.Timer
	armed   bool // timer will fire
}

// bubbleClockEnd is the instant before which a clock is taken to be a
// testing/synctest bubble's (which starts at midnight UTC, 2000-01-01).
var bubbleClockEnd = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// add starts renewing x's lease.
func (rn *renewer) add(x *execution) {
	if time.Now().Before(bubbleClockEnd) {
		x.mu.Lock() // x.renewAlone reads x.timer
		x.timer = time.AfterFunc(rn.m.renewInterval(), x.renewAlone)
		x.mu.Unlock()
		return
	}
	rn.mu.Lock()
	x.prev, x.next = nil, rn.running
	if rn.running != nil {
		rn.running.prev = x
	}
	rn.running = x
	x.listed = true
	if !rn.armed {
		rn.armed = true
		rn.timer = time.AfterFunc(rn.m.renewInterval(), rn.sweep)
	}
	rn.mu.Unlock()
}

// remove stops renewing x's lease; once it returns, no renewal of x is
// running or will run.
func (rn *renewer) remove(x *execution) {
	if !x.listed {
		x.mu.Lock() // waits for a renewal of x in progress
		x.stopped = true
		x.mu.Unlock()
		x.timer.Stop()
		return
	}
	rn.mu.Lock()
	if x.prev != nil {
		x.prev.next = x.next
	} else {
		rn.running = x.next
	}
	if x.next != nil {
		x.next.prev = x.prev
	}
	x.prev, x.next = nil, nil
	rn.mu.Unlock()
	x.mu.Lock() // waits for a renewal of x in progress
	x.stopped = true
	x.mu.Unlock()
}

// sweep renews every running execution's lease, then re-arms the timer if
// any still runs: sooner when a renewal failed for a reason other than a
// lost lease.
func (rn *renewer) sweep() {
	rn.mu.Lock()
	var due []*execution
	for x := rn.running; x != nil; x = x.next {
		due = append(due, x)
	}
	rn.mu.Unlock()
	failed := false
	for _, x := range due {
		if !x.renew() {
			failed = true
		}
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.running == nil {
		rn.armed = false
		return
	}
	next := rn.m.renewInterval()
	if failed {
		next = max(next/4, time.Millisecond)
	}
	rn.timer.Reset(next)
}

// renewInterval is the time between renewals: a third of the lease, so
// that two can fail before it ends.
func (m *middleware) renewInterval() time.Duration {
	return max(m.cfg.Lease/3, time.Millisecond)
}

// renewAlone renews x's lease on x's own timer and re-arms it, sooner
// after a failure.
func (x *execution) renewAlone() {
	x.mu.Lock()
	err := x.renewLocked()
	if !x.stopped && !x.lost {
		next := x.m.renewInterval()
		if err != nil {
			next = max(next/4, time.Millisecond)
		}
		x.timer.Reset(next)
	}
	x.mu.Unlock()
	x.logRenewal(err)
}

// renew extends x's lease, unless x is over or its lease is lost, and
// reports false when the store failed to.
func (x *execution) renew() bool {
	x.mu.Lock()
	err := x.renewLocked()
	x.mu.Unlock()
	x.logRenewal(err)
	return err == nil || errors.Is(err, ErrLeaseLost)
}

// renewLocked extends x's lease, unless x is over or its lease is lost,
// and returns the store's error; ErrLeaseLost also marks x lost. The
// caller holds x.mu.
func (x *execution) renewLocked() error {
	if x.stopped || x.lost {
		return nil
	}
	err := x.m.store.Renew(x.storeCtx, x.skey, x.token, x.m.cfg.Lease)
	if errors.Is(err, ErrLeaseLost) {
		x.lost = true
	}
	return err
}

// logRenewal logs a failed renewal, without any lock held.
func (x *execution) logRenewal(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		x.m.cfg.Logger.LogAttrs(x.storeCtx, slog.LevelWarn, "idempotency: lease lost while the handler runs",
			slog.Any("error", err))
	default:
		x.m.cfg.Logger.LogAttrs(x.storeCtx, slog.LevelWarn, "idempotency: lease renewal failed",
			slog.Any("error", err))
	}
}
