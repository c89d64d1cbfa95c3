package budget

import (
	"net/http"

	"github.com/rebound-http/rebound/internal/hostname"
)

// Reset forgets host's own state: its budget when budgets are per host
// (Config.PerHost) and its client-side throttle, so its next attempt
// starts as a new host's does. A budget shared by every host is not
// reset (it belongs to all of them). It reports whether the host had
// state of its own. host is a URL host as Balance takes it.
func (t *Transport) Reset(host string) bool {
	if t.hosts == nil {
		return false
	}
	return t.hosts.forget(hostname.Canonical(host))
}

// WithNext returns a Transport that sends through next and shares every
// piece of t's state: its budgets, throttles and hooks. Attempts through
// either count in both. It is how a chain rebuilt around a new inner link
// keeps the budget's state.
func (t *Transport) WithNext(next http.RoundTripper) *Transport {
	c := *t
	if next == nil {
		next = t.next
	}
	c.next = next
	c.nextAt, _ = next.(timedRoundTripper)
	return &c
}

// forget drops host's entry, reporting whether it had one.
func (r *registry) forget(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	if _, ok := old[host]; !ok {
		return false
	}
	m := make(map[string]*entry, len(old))
	for k, v := range old {
		if k != host {
			m[k] = v
		}
	}
	r.m.Store(&m)
	return true
}
