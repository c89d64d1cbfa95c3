package transport

import (
	"cmp"
	"net/http"
	"reflect"
	"slices"
	"time"
	"unsafe"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/internal/hostname"
)

// Latency is what a Transport learned of one host's attempt latencies
// (with Config.Hedge or Config.LearnedTimeout on): quantiles over its last
// one to two windows of attempts, and the values derived from them. The
// zero value is a host with no samples.
type Latency struct {
	// Host is the canonical URL host.
	Host string
	// Samples is the number of attempts the quantiles are read from.
	Samples uint64
	// P50, P90 and P99 are quantiles of those attempts' latencies (time to
	// response headers), each the upper bound of its histogram bucket (at
	// most 12.5 % above the true value); zero without samples.
	P50, P90, P99 time.Duration
	// Hedge is the hedge delay in force for the host (Config.Hedge); zero
	// when hedging is off or not enough samples were seen.
	Hedge time.Duration
	// Timeout is the learned attempt timeout in force (Config.
	// LearnedTimeout); zero when off or not learned yet.
	Timeout time.Duration
}

// Latencies returns what the Transport learned of each host's latency,
// sorted by host; nil when neither Config.Hedge nor Config.LearnedTimeout
// is on.
func (t *Transport) Latencies() []Latency {
	if t.lat == nil {
		return nil
	}
	var out []Latency
	t.lat.hosts.Range(func(k, v any) bool {
		h := v.(*hostLatency)
		counts, total := h.counts()
		l := Latency{Host: k.(string), Samples: total, Timeout: t.lat.learnedTimeout(h)}
		if t.lat.hedge != nil {
			l.Hedge = t.lat.learnedHedge(h)
		}
		if total > 0 {
			l.P50 = time.Duration(quantile(&counts, total, 0.5))
			l.P90 = time.Duration(quantile(&counts, total, 0.9))
			l.P99 = time.Duration(quantile(&counts, total, 0.99))
		}
		out = append(out, l)
		return true
	})
	slices.SortFunc(out, func(a, b Latency) int { return cmp.Compare(a.Host, b.Host) })
	return out
}

// Admission returns the state of every host the Transport's admission
// keeps one for (throttled, or announcing a quota); nil with NoWait.
func (t *Transport) Admission() []admission.HostState {
	return t.adm.Snapshot()
}

// Reset forgets what the Transport learned of host: its admission states
// (pauses, paces, quotas; calls waiting for a turn get it at once) and its
// learned latency. It returns the number of admission keys reset and
// whether a latency was forgotten. Attempts in flight finish as they
// started. host is a URL host in any spelling.
func (t *Transport) Reset(host string) (keys int, latency bool) {
	keys = t.adm.Reset(host)
	if t.lat != nil {
		host = hostname.Canonical(host)
		t.lat.mu.Lock()
		if _, ok := t.lat.hosts.LoadAndDelete(host); ok {
			t.lat.n.Add(-1)
			latency = true
		}
		t.lat.mu.Unlock()
	}
	return keys, latency
}

// Kept says which of a Transport's learned state Reconfigure carried
// over.
type Kept struct {
	// Admission: the admission states (pauses, paces, quotas) were kept,
	// because the settings that shape them did not change.
	Admission bool
	// Latency: the learned latencies were kept (both configurations
	// learn them).
	Latency bool
}

// Reconfigure returns a retry loop with cfg that sends through next and
// keeps what t learned, where it still applies: the admission states when
// the settings that shape them (MaxRetryAfter, BaseDelay's spread, the
// retryable statuses, AdmissionKey, DisablePacing, DisableAdaptivePace,
// NoWait) are the same, AdmissionKey compared by identity; the learned
// latencies when both configurations learn them (the values derived from
// them are computed again under cfg). t goes on working for the calls
// that hold it. A nil next means t's.
func (t *Transport) Reconfigure(next http.RoundTripper, cfg Config) (*Transport, Kept) {
	if next == nil {
		next = t.next
	}
	n := New(next, cfg)
	var kept Kept
	if t.adm != nil && n.adm != nil && sameAdmission(t.cfg.admission(), n.cfg.admission()) {
		n.adm, kept.Admission = t.adm, true
	}
	if t.lat != nil && n.lat != nil {
		kept.Latency = true
		t.lat.mu.Lock()
		t.lat.hosts.Range(func(k, v any) bool {
			h := v.(*hostLatency)
			n.lat.hosts.Store(k, h)
			n.lat.n.Add(1)
			h.mu.Lock()
			n.lat.recomputeLocked(h)
			h.mu.Unlock()
			return true
		})
		t.lat.mu.Unlock()
	}
	return n, kept
}

// sameAdmission reports whether two admission configurations are equal,
// their Key funcs compared by identity.
func sameAdmission(a, b admission.Config) bool {
	if a.MaxWait != b.MaxWait || a.Spread != b.Spread || a.DisableQuota != b.DisableQuota ||
		a.DisablePace != b.DisablePace || a.MaxKeys != b.MaxKeys {
		return false
	}
	if (a.Retryable == nil) != (b.Retryable == nil) || a.Retryable != nil && *a.Retryable != *b.Retryable {
		return false
	}
	return sameFunc(a.Key, b.Key)
}

// sameFunc reports whether f and g are the same func value: both nil, or
// one function or closure (two closures of one literal made apart are
// different values, and so are taken as changed).
func sameFunc[F any](f, g F) bool {
	if reflect.TypeFor[F]().Kind() != reflect.Func {
		return false
	}
	// A func value is one pointer to its closure (code and captured
	// variables); reflect's Pointer gives only the code, shared by every
	// closure of one literal.
	return *(*unsafe.Pointer)(unsafe.Pointer(&f)) == *(*unsafe.Pointer)(unsafe.Pointer(&g))
}
