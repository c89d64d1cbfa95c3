package rebound_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/rebound-http/rebound"
)

// TestFreshRequestPathAllocates0 checks that the default chain adds no
// allocation to a healthy GET made as programs make it: a new request
// per call, sent by RoundTrip or by http.Client.Do with the body read and
// closed. The allocations of building and sending the request are
// measured without the chain and subtracted. (A keyed POST adds the
// generated key's, asserted by the idempotency package.)
func TestFreshRequestPathAllocates0(t *testing.T) {
	const url = "http://api.test/v1/things"
	call := func(rt http.RoundTripper, viaClient bool) func() {
		client := &http.Client{Transport: rt}
		return func() {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			var resp *http.Response
			if viaClient {
				resp, err = client.Do(req)
			} else {
				resp, err = rt.RoundTrip(req)
			}
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for name, viaClient := range map[string]bool{"RoundTrip": false, "Client.Do": true} {
		t.Run(name, func(t *testing.T) {
			bare := testing.AllocsPerRun(1000, call(newOKStub(), viaClient))
			chain := rebound.NewTransport(newOKStub())
			call(chain, viaClient)() // the host's first call adds it
			got := testing.AllocsPerRun(1000, call(chain, viaClient))
			if got != bare {
				t.Fatalf("a call through the chain allocates %v times, %v without it", got, bare)
			}
		})
	}
}

// TestKeyedPOSTAllocations pins what a generated key costs on a fresh
// POST: the link's copy of the request with its key, and the copy of the
// header map (three allocations; see idempotency.Transport).
func TestKeyedPOSTAllocations(t *testing.T) {
	body := make([]byte, 1024)
	call := func(rt http.RoundTripper) func() {
		return func() {
			req, err := http.NewRequest(http.MethodPost, "http://api.test/v1/things", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	bare := testing.AllocsPerRun(1000, call(newOKStub()))
	chain := rebound.NewTransport(newOKStub())
	call(chain)()
	if got := testing.AllocsPerRun(1000, call(chain)); got != bare+3 {
		t.Fatalf("a keyed POST through the chain allocates %v times, %v without it; want 3 more", got, bare)
	}
}
