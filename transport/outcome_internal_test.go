package transport

import (
	"net/http"
	"runtime"
	"testing"
)

// TestOutcomeEntriesGoWithTheirResponses: the table behind Outcome holds
// its responses weakly; once they are collected their entries are gone.
func TestOutcomeEntriesGoWithTheirResponses(t *testing.T) {
	before := outcomes.n.Load()
	rt := New(roundTripper(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 503, Body: http.NoBody, Header: http.Header{"Retry-After": {"3600"}}, Request: req}, nil
	}), Config{})
	for range 100 {
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := Outcome(resp); !ok {
			t.Fatal("not recorded")
		}
	}
	if got := outcomes.n.Load(); got < before+100 {
		t.Fatalf("%d entries, want at least %d", got, before+100)
	}
	// Cleanups run on their own goroutine after a collection: collect
	// until they have (a few cycles), with a generous bound.
	for i := 0; i < 1000 && outcomes.n.Load() > before; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := outcomes.n.Load(); got > before {
		t.Fatalf("%d entries left after the responses were collected, want %d", got, before)
	}
	outcomes.mu.Lock()
	defer outcomes.mu.Unlock()
	if int64(len(outcomes.m)) != outcomes.n.Load() {
		t.Fatalf("count %d, table %d", outcomes.n.Load(), len(outcomes.m))
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
