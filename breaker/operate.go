package breaker

import (
	"hash/maphash"

	"github.com/rebound-http/rebound/internal/hostname"
)

// ReasonReset is the StateChange reason of a breaker closed by Reset, not
// by a probe.
const ReasonReset = "reset by an operator"

// HostReport is a HostState with what an operator needs to read it: why
// an open breaker tripped. The zero value is a closed breaker that has
// seen nothing.
type HostReport struct {
	HostState
	// Reason says why an open breaker tripped, in the words of
	// OpenError.Reason ("10 of the last 10 attempts failed"); "" when
	// closed.
	Reason string
	// DeadHost reports that an open breaker tripped on the dead-host test
	// (nearly every recent attempt failed) rather than the degraded-host
	// test.
	DeadHost bool
}

// Reset closes the breaker, whatever its state, and starts it afresh: a
// new generation with no evidence against the host, so outcomes of
// attempts allowed before are ignored. An open or half-open breaker
// reports the change (To Closed, Reason ReasonReset) to
// Config.OnStateChange, with no lock held; a closed one reports nothing.
// Trips keeps counting.
func (b *Breaker) Reset() {
	g := b.load()
	b.mu.Lock()
	g = b.cur.Load()
	from := g.shownState()
	ng := b.newGen(Closed, g.n+1, b.set.now())
	b.cur.Store(ng)
	b.mu.Unlock()
	if from != Closed {
		b.notify(StateChange{Host: b.name, From: from, To: Closed, Reason: ReasonReset, Generation: ng.n})
	}
}

// Reset closes the breaker of host (a URL host in the form Snapshot
// reports it; other spellings are folded) and clears its evidence, as
// Breaker.Reset does. It reports whether the host was tracked; an
// untracked host has nothing to reset. With Config.Key, host is the key.
func (t *Transport) Reset(host string) bool {
	b := t.state().reg.lookup(hostname.Canonical(host))
	if b == nil {
		return false
	}
	b.Reset()
	return true
}

// Report returns the state of host's breaker with why it tripped; ok is
// false when the host is not tracked.
func (t *Transport) Report(host string) (r HostReport, ok bool) {
	b := t.state().reg.lookup(hostname.Canonical(host))
	if b == nil {
		return HostReport{}, false
	}
	return b.Report(), true
}

// Reports returns Report of every tracked host, in no particular order.
func (t *Transport) Reports() []HostReport {
	var out []HostReport
	t.state().reg.each(func(b *Breaker) { out = append(out, b.Report()) })
	return out
}

// Report returns the breaker's state with why it tripped.
func (b *Breaker) Report() HostReport {
	r := HostReport{HostState: b.Snapshot()}
	if g := b.cur.Load(); g != nil && g.state == Open {
		r.Reason, r.DeadHost = g.why.reason(), g.why.test == 1
	}
	return r
}

// lookup returns the breaker of host, or nil; it never adds one.
func (r *registry) lookup(host string) *Breaker {
	if host == "" {
		return nil
	}
	h := maphash.String(r.seed, host)
	sh := &r.shards[h>>(64-r.shardBits)&uint64(len(r.shards)-1)]
	return sh.tab.Load().find(h, hostKey{host: host})
}
