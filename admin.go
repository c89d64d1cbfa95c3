package rebound

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rebound-http/rebound/admission"
	"github.com/rebound-http/rebound/breaker"
	"github.com/rebound-http/rebound/internal/hostname"
	"github.com/rebound-http/rebound/transport"
)

// HostSnapshot is what a Transport knows of one host now, for an
// operator: the policy that serves it and the state of each link. It
// names no credential (admission numbers them) and holds no path or
// query string. The zero value is a host nothing is known of.
type HostSnapshot struct {
	// Host is the canonical URL host ("api.example.com",
	// "127.0.0.1:8080").
	Host string
	// Pattern is the host pattern of the policy serving the host; "" for
	// the default policy.
	Pattern string
	// Breaker is the host's circuit breaker (zero, Closed, when the
	// policy has none or the host is not tracked); Breaker.Reason says why
	// an open one tripped.
	Breaker breaker.HostReport
	// HasBudget reports whether the policy has a retry budget, and
	// RetryBalance the retries it would allow the host now.
	HasBudget    bool
	RetryBalance float64
	// Admission is the host's admission (pauses, paces, quotas, queues);
	// nil when it has none, every turn given at once.
	Admission *admission.HostState
	// Latency is what the retry loop learned of the host's latency; nil
	// when its policy learns none or it has no samples.
	Latency *transport.Latency
	// IsolatedFor is the time left of the host's isolation
	// (Transport.Isolate); zero when it is not isolated.
	IsolatedFor time.Duration
	// Stats are the host's counters; zero when the host is beyond
	// MaxStatsHosts or counting is off (WithoutStats).
	Stats HostStats
}

// Snapshot returns what the Transport knows of every host it tracks
// (counted in Stats, tracked by a breaker, with admission or latency
// state, or isolated), sorted by host. Each host is read from the chain
// of the policy serving it now. It is safe to call concurrently with
// requests; it allocates, and is meant for an admin page, not a hot path.
func (t *Transport) Snapshot() []HostSnapshot {
	l := t.init()
	now := time.Now()
	byHost := map[string]*HostSnapshot{}
	get := func(h string) *HostSnapshot {
		s := byHost[h]
		if s == nil {
			s = &HostSnapshot{Host: h}
			byHost[h] = s
		}
		return s
	}
	type perChain struct {
		breakers map[string]breaker.HostReport
		adm      map[string]admission.HostState
		lat      map[string]transport.Latency
	}
	chains := map[*chain]*perChain{}
	for _, c := range l.chains() {
		if chains[c] != nil {
			continue
		}
		pc := &perChain{breakers: map[string]breaker.HostReport{}, adm: map[string]admission.HostState{}, lat: map[string]transport.Latency{}}
		chains[c] = pc
		if c.breaker != nil {
			for _, r := range c.breaker.Reports() {
				pc.breakers[r.Host] = r
				get(r.Host)
			}
		}
		if c.retry != nil {
			for _, a := range c.retry.Admission() {
				pc.adm[a.Host] = a
				get(a.Host)
			}
			for _, x := range c.retry.Latencies() {
				if x.Samples > 0 {
					pc.lat[x.Host] = x
					get(x.Host)
				}
			}
		}
	}
	for h, is := range l.iso {
		if left := is.until.Sub(now); left > 0 {
			get(h).IsolatedFor = left
		}
	}
	stats := t.Stats()
	for _, hs := range stats.Hosts {
		get(hs.Host).Stats = hs
	}
	out := make([]HostSnapshot, 0, len(byHost))
	for h, s := range byHost {
		c := l.chainFor(h)
		s.Pattern = c.pattern
		if pc := chains[c]; pc != nil {
			if r, ok := pc.breakers[h]; ok {
				s.Breaker = r
			}
			if a, ok := pc.adm[h]; ok {
				s.Admission = &a
			}
			if x, ok := pc.lat[h]; ok {
				s.Latency = &x
			}
		}
		if c.budget != nil {
			s.HasBudget, s.RetryBalance = true, c.budget.Balance(h)
		}
		if s.Breaker.Host == "" {
			s.Breaker.Host = h
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b HostSnapshot) int { return cmp.Compare(a.Host, b.Host) })
	return out
}

// Ready reports whether the chosen hosts can be called: nil when each
// one's circuit breaker is closed and none is isolated, else an error
// naming each host that is not and why ("rebound: not ready:
// api.example.com circuit open: 10 of the last 10 attempts failed").
// hosts are URL hosts as Isolate takes them; a host the Transport has
// not seen is ready. With no hosts it reports nil: choose the hosts
// without which your service is of no use, since a readiness probe that
// fails on any dependency's outage takes every replica out of rotation
// at once.
//
//	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
//		if err := rt.Ready("payments.internal"); err != nil {
//			http.Error(w, err.Error(), http.StatusServiceUnavailable)
//		}
//	})
func (t *Transport) Ready(hosts ...string) error {
	if len(hosts) == 0 {
		return nil
	}
	l := t.init()
	now := time.Now()
	var why []string
	for _, h := range hosts {
		h = hostname.Canonical(h)
		if is, ok := l.iso[h]; ok && now.Before(is.until) {
			why = append(why, fmt.Sprintf("%s isolated by an operator for another %v", h, is.until.Sub(now).Round(time.Second)))
			continue
		}
		c := l.chainFor(h)
		if c.breaker == nil {
			continue
		}
		r, ok := c.breaker.Report(h)
		if !ok || r.State == breaker.Closed {
			continue
		}
		w := h + " circuit " + r.State.String()
		if r.Reason != "" {
			w += ": " + r.Reason
		}
		why = append(why, w)
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New("rebound: not ready: " + strings.Join(why, "; "))
}

// AdminHandler returns a read-only http.Handler that serves Snapshot:
// as JSON when the request accepts application/json (or its path ends
// in ".json"), else as a plain-text page a person can read. It answers
// GET and HEAD only, changes nothing, and serves no credential, path or
// query string, only host names, patterns, states and counts: safe to
// mount on an admin port, as one would net/http/pprof.
//
//	admin := http.NewServeMux()
//	admin.Handle("/rebound", rt.AdminHandler())
func (t *Transport) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		snap := t.Snapshot()
		if strings.HasSuffix(r.URL.Path, ".json") || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(adminJSON(snap, time.Now()))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeAdminText(w, snap, time.Now())
	})
}

// adminHost is the JSON form of a HostSnapshot: states by name,
// durations as Go durations ("1.5s").
type adminHost struct {
	Host         string            `json:"host"`
	Pattern      string            `json:"pattern"`
	Breaker      adminBreaker      `json:"breaker"`
	RetryBalance *float64          `json:"retry_balance,omitempty"`
	Admission    []adminKey        `json:"admission,omitempty"`
	HostPause    string            `json:"host_paused_for,omitempty"`
	Latency      *adminLatency     `json:"latency,omitempty"`
	IsolatedFor  string            `json:"isolated_for,omitempty"`
	Calls        uint64            `json:"calls"`
	Attempts     uint64            `json:"attempts"`
	Retries      map[string]uint64 `json:"retries,omitempty"`
	GiveUps      map[string]uint64 `json:"give_ups,omitempty"`
	Refusals     map[string]uint64 `json:"refusals,omitempty"`
}

type adminBreaker struct {
	State    string  `json:"state"`
	Reason   string  `json:"reason,omitempty"`
	Trips    int     `json:"trips"`
	Evidence float64 `json:"evidence"`
	RetryIn  string  `json:"retry_in,omitempty"`
}

type adminKey struct {
	Credential int     `json:"credential"`
	Limit      string  `json:"limit"`
	PausedFor  string  `json:"paused_for,omitempty"`
	Pace       float64 `json:"pace_per_second,omitempty"`
	QuotaLeft  *int64  `json:"quota_left,omitempty"`
	QuotaReset string  `json:"quota_reset,omitempty"`
	Queued     int     `json:"queued"`
	InFlight   int     `json:"in_flight"`
}

type adminLatency struct {
	Samples uint64 `json:"samples"`
	P50     string `json:"p50"`
	P90     string `json:"p90"`
	P99     string `json:"p99"`
	Hedge   string `json:"hedge_delay,omitempty"`
	Timeout string `json:"attempt_timeout,omitempty"`
}

// dur writes d as a Go duration to three significant digits ("4.72ms",
// "14m55s"), "" for zero.
func dur(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return short(d)
}

// short rounds d to three significant digits, or to the second from a
// minute on, and writes it.
func short(d time.Duration) string {
	switch {
	case d >= time.Minute:
		d = d.Round(time.Second)
	case d > 0:
		unit := time.Duration(1)
		for unit*1000 <= d {
			unit *= 10
		}
		d = d.Round(unit)
	}
	return d.String()
}

func adminJSON(snap []HostSnapshot, now time.Time) any {
	hosts := make([]adminHost, 0, len(snap))
	for _, s := range snap {
		h := adminHost{Host: s.Host, Pattern: s.Pattern, IsolatedFor: dur(s.IsolatedFor),
			Breaker: adminBreaker{State: s.Breaker.State.String(), Reason: s.Breaker.Reason,
				Trips: s.Breaker.Trips, Evidence: s.Breaker.Evidence, RetryIn: dur(s.Breaker.RetryIn)},
			Calls: s.Stats.Calls, Attempts: s.Stats.Attempts,
			Retries: s.Stats.Retries, GiveUps: s.Stats.GiveUps, Refusals: s.Stats.Refusals}
		if s.HasBudget {
			b := s.RetryBalance
			h.RetryBalance = &b
		}
		if a := s.Admission; a != nil {
			h.HostPause = dur(a.PausedFor)
			for _, k := range a.Keys {
				ak := adminKey{Credential: k.Credential, Limit: k.Limit.String(), PausedFor: dur(k.PausedFor),
					Pace: k.Pace, QuotaReset: dur(k.QuotaReset), Queued: k.Queued, InFlight: k.InFlight}
				if k.QuotaReset > 0 {
					q := k.QuotaLeft
					ak.QuotaLeft = &q
				}
				h.Admission = append(h.Admission, ak)
			}
		}
		if x := s.Latency; x != nil {
			h.Latency = &adminLatency{Samples: x.Samples, P50: short(x.P50), P90: short(x.P90), P99: short(x.P99),
				Hedge: dur(x.Hedge), Timeout: dur(x.Timeout)}
		}
		hosts = append(hosts, h)
	}
	return struct {
		Time  time.Time   `json:"time"`
		Hosts []adminHost `json:"hosts"`
	}{now.UTC().Truncate(time.Second), hosts}
}

// writeAdminText writes snap as a page a person reads: one line per host,
// then the details of the hosts that have any.
func writeAdminText(w io.Writer, snap []HostSnapshot, now time.Time) {
	fmt.Fprintf(w, "rebound: %d hosts at %s\n\n", len(snap), now.UTC().Format(time.RFC3339))
	var buf bytes.Buffer
	defer func() {
		for line := range strings.Lines(buf.String()) {
			io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
		}
	}()
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPOLICY\tCIRCUIT\tRETRY BALANCE\tCALLS\tATTEMPTS\tREFUSED\tP50/P99\tNOTE")
	for _, s := range snap {
		pattern := s.Pattern
		if pattern == "" {
			pattern = "(default)"
		}
		balance := "-"
		if s.HasBudget {
			balance = strconv.FormatFloat(s.RetryBalance, 'f', 1, 64)
		}
		var refused uint64
		for _, n := range s.Stats.Refusals {
			refused += n
		}
		lat := "-"
		if s.Latency != nil {
			lat = short(s.Latency.P50) + "/" + short(s.Latency.P99)
		}
		var notes []string
		if s.IsolatedFor > 0 {
			notes = append(notes, "ISOLATED for "+dur(s.IsolatedFor))
		}
		if s.Breaker.Reason != "" {
			notes = append(notes, s.Breaker.Reason)
		}
		if a := s.Admission; a != nil {
			if a.PausedFor > 0 {
				notes = append(notes, "paused for "+dur(a.PausedFor))
			}
			for _, k := range a.Keys {
				if k.Limit != admission.LimitNone {
					notes = append(notes, fmt.Sprintf("credential %d limited by %s", k.Credential, k.Limit))
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Host, pattern, s.Breaker.State, balance,
			s.Stats.Calls, s.Stats.Attempts, refused, lat, strings.Join(notes, "; "))
	}
	tw.Flush()
}
