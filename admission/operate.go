package admission

import (
	"cmp"
	"slices"
	"time"

	"github.com/rebound-http/rebound/internal/hostname"
)

// HostState is a read-only snapshot of one host's admission, for an
// operator's page. The zero value is a host with no state: every turn
// given at once.
type HostState struct {
	// Host is the canonical URL host ("api.example.com",
	// "127.0.0.1:8080").
	Host string
	// PausedFor is how long the host as a whole stays paused by a 5xx's
	// wait hint (every credential); zero when it is not.
	PausedFor time.Duration
	// Keys are the host's states, one per caller partition (credential)
	// that was throttled or announced a quota.
	Keys []KeyState
}

// KeyState is one key's admission. It names the credential by a number,
// never by its value or digest. The zero value is a key that limits
// nothing.
type KeyState struct {
	// Credential numbers the caller partition within its host: 0 for
	// requests without a credential (or the "" partition of Config.Key),
	// 1, 2 ... for the others, in an order fixed for the Admission's
	// lifetime but otherwise meaningless.
	Credential int
	// Limit names what limits the key's turns now: LimitNone when a turn
	// would be given at once.
	Limit Limit
	// PausedFor is how long the key stays paused (a wait hint, a spent
	// quota); zero when it is not.
	PausedFor time.Duration
	// Pace is the pace learned from the server's throttling, in turns per
	// second; zero when there is none.
	Pace float64
	// QuotaLeft is the remaining count of the last quota the server
	// announced, and QuotaReset the time until that quota resets; both
	// zero when none is in force.
	QuotaLeft  int64
	QuotaReset time.Duration
	// Queued is the number of calls waiting for a turn, InFlight the turns
	// given and not yet reported.
	Queued, InFlight int
}

// Snapshot returns the state of every host with one, sorted by host. A
// nil Admission has none.
func (a *Admission) Snapshot() []HostState {
	if a.idle() {
		return nil
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]HostState, 0, len(a.hosts))
	for _, h := range a.hosts {
		hs := HostState{Host: h.name, PausedFor: max(h.pauseUntil.Sub(now), 0)}
		creds := make([]uint64, 0, len(h.creds))
		for c := range h.creds {
			creds = append(creds, c)
		}
		slices.Sort(creds)
		n := 0
		for _, c := range creds {
			st := h.creds[c]
			k := KeyState{Queued: len(st.queue), InFlight: st.inflight, Pace: st.rate}
			if c != 0 {
				n++
				k.Credential = n
			}
			if at, lim := st.earliest(now); at.After(now) || lim != LimitNone {
				k.Limit = lim
			}
			if p, _ := st.pause(); p.After(now) {
				k.PausedFor = p.Sub(now)
			}
			if now.Before(st.quotaEnd) {
				k.QuotaLeft, k.QuotaReset = st.quotaLeft, st.quotaEnd.Sub(now)
			}
			hs.Keys = append(hs.Keys, k)
		}
		out = append(out, hs)
	}
	slices.SortFunc(out, func(x, y HostState) int { return cmp.Compare(x.Host, y.Host) })
	return out
}

// Reset clears what host's admission learned: the host's pause and, for
// every credential, its pause, pace, quota and history. Calls waiting for
// a turn get it at once; states left with nothing in flight are dropped,
// so the host's next call takes the fast path again. It returns the
// number of keys reset. host is a URL host in any spelling.
func (a *Admission) Reset(host string) int {
	if a.idle() {
		return 0
	}
	host = hostname.Canonical(host)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[host]
	if h == nil {
		return 0
	}
	h.pauseUntil = time.Time{}
	n := 0
	for _, st := range h.creds {
		n++
		st.pauseUntil, st.pauseLimit = time.Time{}, LimitNone
		st.rate, st.rmax, st.k, st.t0, st.lastT, st.probe = 0, 0, 0, time.Time{}, time.Time{}, false
		st.quotaEnd, st.quotaRate, st.quotaBurst, st.quotaLeft = time.Time{}, 0, 0, 0
		st.next = now
		st.cur, st.prev, st.good = bucket{start: now}, bucket{}, 0
		a.dispatch(st, now)
		if st.idle(now) {
			a.drop(st)
		}
	}
	if len(h.creds) == 0 {
		delete(a.hosts, host)
	}
	return n
}
