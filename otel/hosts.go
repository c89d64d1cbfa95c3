package reboundotel

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rebound-http/rebound"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// hostSet bounds the hosts metrics are reported under, as rebound.Stats
// does: the first rebound.MaxStatsHosts canonical hosts keep their own
// server.address and server.port, and every further host is reported as
// server.address rebound.OtherHost, without a port. Spans are not bounded
// (each is one record, not a series): they carry the canonical host.
type hostSet struct {
	// known holds the hosts with attributes of their own. It is replaced,
	// never modified, when a host is added (under mu), so a lookup is an
	// atomic load and a map read, without allocation.
	known atomic.Pointer[map[string]struct{}]
	mu    sync.Mutex // serialises additions
}

// otherAttrs are the metric attributes of the hosts past the bound.
var otherAttrs = []attribute.KeyValue{semconv.ServerAddress(rebound.OtherHost)}

// metricAttrs returns server.address and server.port of a canonical host
// for a metric: hostAttrs while the host is one of the first
// rebound.MaxStatsHosts seen, otherAttrs after.
func (s *hostSet) metricAttrs(host string, scheme ...string) []attribute.KeyValue {
	if s.has(host) || s.add(host) {
		return hostAttrs(host, scheme...)
	}
	return append([]attribute.KeyValue(nil), otherAttrs...)
}

// has reports whether host has attributes of its own.
func (s *hostSet) has(host string) bool {
	m := s.known.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[host]
	return ok
}

// add gives host attributes of its own if there is room, and reports
// whether it has them.
func (s *hostSet) add(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old map[string]struct{}
	if m := s.known.Load(); m != nil {
		old = *m
	}
	if _, ok := old[host]; ok {
		return true
	}
	if len(old) >= rebound.MaxStatsHosts {
		return false
	}
	m := maps.Clone(old)
	if m == nil {
		m = map[string]struct{}{}
	}
	m[strings.Clone(host)] = struct{}{} // host may be part of a request's URL
	s.known.Store(&m)
	return true
}
