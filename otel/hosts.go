package reboundotel

import (
	"sync"

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
	known sync.Map   // canonical host → struct{}; additions under mu
	mu    sync.Mutex // serialises additions
	n     int        // hosts in known; guarded by mu
}

// otherAttrs are the metric attributes of the hosts past the bound.
var otherAttrs = []attribute.KeyValue{semconv.ServerAddress(rebound.OtherHost)}

// metricAttrs returns server.address and server.port of a canonical host
// for a metric: hostAttrs while the host is one of the first
// rebound.MaxStatsHosts seen, otherAttrs after.
func (s *hostSet) metricAttrs(host string, scheme ...string) []attribute.KeyValue {
	if _, ok := s.known.Load(host); ok {
		return hostAttrs(host, scheme...)
	}
	s.mu.Lock()
	_, ok := s.known.Load(host)
	if !ok && s.n < rebound.MaxStatsHosts {
		s.known.Store(host, struct{}{})
		s.n++
		ok = true
	}
	s.mu.Unlock()
	if !ok {
		return append([]attribute.KeyValue(nil), otherAttrs...)
	}
	return hostAttrs(host, scheme...)
}
