package breaker_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound/breaker"
)

// hostURL returns the URL of the i-th distinct host.
func hostURL(i int) string { return "https://h" + strconv.Itoa(i) + ".example.com/" }

func TestRegistryStaysAtItsBound(t *testing.T) {
	var calls atomic.Int64
	base := stub(func(*http.Request) (*http.Response, error) {
		calls.Add(1)
		return okResponse, nil
	})
	tr := breaker.NewTransport(base, breaker.Config{})
	const hosts = 200_000
	for i := range hosts {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, hostURL(i), nil)
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if i == breaker.DefaultMaxHosts-1 && tr.Len() > breaker.DefaultMaxHosts {
			t.Fatalf("%d hosts tracked after %d", tr.Len(), i+1)
		}
	}
	if n := tr.Len(); n != breaker.DefaultMaxHosts {
		t.Fatalf("%d hosts tracked after %d distinct ones, want the bound %d", n, hosts, breaker.DefaultMaxHosts)
	}
	if n := len(tr.Snapshot()); n != breaker.DefaultMaxHosts {
		t.Fatalf("snapshot has %d hosts", n)
	}
	if calls.Load() != hosts || tr.Untracked() != 0 {
		t.Fatalf("base calls %d, untracked %d", calls.Load(), tr.Untracked())
	}
}

func TestEvictionOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failing := map[string]bool{}
		var calls atomic.Int64
		base := stub(func(r *http.Request) (*http.Response, error) {
			calls.Add(1)
			if failing[r.URL.Host] {
				return &http.Response{StatusCode: 500, Body: http.NoBody}, nil
			}
			return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
		})
		tr := breaker.NewTransport(base, breaker.Config{MaxHosts: 3, Jitter: -1, OpenTimeout: 10 * time.Second})
		use := func(host string, n int) {
			for range n {
				send(t, tr, "https://"+host+"/")
			}
		}
		hosts := func() []string {
			var out []string
			for _, s := range tr.Snapshot() {
				out = append(out, s.Host+":"+s.State.String())
			}
			return out
		}
		failing["a"] = true
		use("a", 10) // a opens at t=0; its first probe is due at 10 s
		time.Sleep(time.Second)
		use("b", 1)
		time.Sleep(time.Second)
		use("c", 1)
		time.Sleep(time.Second)
		use("d", 1) // full: b is the least recently used closed breaker
		if got := hosts(); len(got) != 3 || got[0] != "a:open" || got[1] != "c:closed" || got[2] != "d:closed" {
			t.Fatalf("after d: %v, want a (open, kept), c, d", got)
		}

		// Every breaker open: a new host passes, untracked.
		failing["c"], failing["d"] = true, true
		use("c", 17) // a success earned credit: up to 17 failures trip
		use("d", 17)
		before := calls.Load()
		use("e", 2)
		if calls.Load() != before+2 || tr.Untracked() != 2 || tr.Len() != 3 {
			t.Fatalf("new host with all open: base calls +%d, untracked %d, tracked %d", calls.Load()-before, tr.Untracked(), tr.Len())
		}

		// Once a's probe is due (at t=10 s) and none is in flight, a is
		// evictable; c and d, which opened later, are not yet.
		time.Sleep(7 * time.Second)
		use("f", 1)
		if got := hosts(); len(got) != 3 || got[0] != "c:open" || got[1] != "d:open" || got[2] != "f:closed" {
			t.Fatalf("after f: %v, want c and d (open) and f", got)
		}
	})
}

// TestMemoryPerHost measures the heap a tracked host costs: its breaker,
// generation, score word, name and table slot. The figure is quoted in the
// Transport's documentation.
func TestMemoryPerHost(t *testing.T) {
	const hosts = 10_000
	reqs := make([]*http.Request, hosts)
	for i := range reqs {
		reqs[i], _ = http.NewRequestWithContext(context.Background(), http.MethodGet, hostURL(i), nil)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := breaker.NewTransport(okBase, breaker.Config{MaxHosts: hosts})
	for _, req := range reqs {
		tr.RoundTrip(req)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perHost := float64(after.HeapAlloc-before.HeapAlloc) / hosts
	t.Logf("%.0f bytes per tracked host", perHost)
	if tr.Len() != hosts {
		t.Fatalf("tracked %d hosts", tr.Len())
	}
	if perHost > 1024 {
		t.Fatalf("%.0f bytes per tracked host, want well under 1 KiB", perHost)
	}
	runtime.KeepAlive(tr)
	runtime.KeepAlive(reqs)
}
