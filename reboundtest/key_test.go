package reboundtest_test

import (
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Call.Key is the key a server reads, whoever set it and under whichever
// name it went out: a generated key toward a keys_honored host (the
// canonical name), toward another host (the lower-case name), the
// caller's X-Idempotency-Key, and none on a GET.
func TestCallKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
			"honored.test": {{Status: 201}},
			"other.test":   {{Status: 201}, {Status: 201}, {Status: 200}},
		}}
		rt := rebound.NewTransport(s, rebound.WithHostPolicy("honored.test", rebound.Policy{KeysHonored: true}))
		client := &http.Client{Transport: rt}
		send := func(method, url string, header http.Header) {
			req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader("x"))
			require.NoError(t, err)
			for k, v := range header {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
		send("POST", "http://honored.test/", nil)
		send("POST", "http://other.test/", nil)
		send("POST", "http://other.test/", http.Header{"X-Idempotency-Key": {"mine-1"}})
		send("GET", "http://other.test/", nil)

		calls := s.Calls()
		require.Len(t, calls, 4)
		assert.Len(t, calls[0].Key, 36, "generated, canonical name")
		assert.Equal(t, calls[0].Header.Get("Idempotency-Key"), calls[0].Key)
		assert.Len(t, calls[1].Key, 36, "generated, lower-case name")
		assert.NotEqual(t, calls[0].Key, calls[1].Key)
		assert.Equal(t, "mine-1", calls[2].Key, "the caller's, under the older name")
		assert.Empty(t, calls[3].Key, "a GET gets none")
	})
}
