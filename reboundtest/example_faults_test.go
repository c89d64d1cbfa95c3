package reboundtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Faults under the chain: a quarter of the dials to api.test are refused
// (a fixed seed picks which), and the chain retries them: every call
// succeeds, and the server sees each once.
func ExampleFaults() {
	script := &reboundtest.Script{Then: &reboundtest.Step{Body: "ok"}}
	faults := &reboundtest.Faults{Next: script, Seed: 1}
	if err := faults.Set(reboundtest.Fault{Host: "api.test", Rate: 0.25, Err: reboundtest.ErrRefused}); err != nil {
		fmt.Println(err)
		return
	}
	rt := rebound.NewTransport(faults, reboundtest.NoWait())
	client := &http.Client{Transport: rt}
	ok := 0
	for range 20 {
		resp, err := client.Get("http://api.test/")
		if err == nil {
			resp.Body.Close()
			ok++
		}
	}
	st := rt.Stats()
	fmt.Println("calls:", st.Total.Calls, "ok:", ok)
	fmt.Println("attempts:", st.Total.Attempts, "server saw:", script.Count("api.test"))
	// Output:
	// calls: 20 ok: 20
	// attempts: 23 server saw: 20
}

// phase is one step of a rehearsal: the faults in force while it lasts.
type phase struct {
	name   string
	faults []reboundtest.Fault
}

// every is the time between the starts of a rehearsal's calls.
const every = 10 * time.Millisecond

// demoPhases are the phases of rebound's demo (make demo), as faults
// against one host: a healthy start, an outage, a rate limit with wait
// hints, a flaky host, reset connections, and the recovery.
func demoPhases(host string) []phase {
	return []phase{
		{"healthy", nil},
		{"outage", []reboundtest.Fault{{Host: host, Rate: 1, Status: 503}}},
		{"ratelimit", []reboundtest.Fault{{Host: host, Rate: 0.5, Status: 429, RetryAfter: time.Second}}},
		{"flaky", []reboundtest.Fault{{Host: host, Rate: 0.3, Status: 503}}},
		{"resets", []reboundtest.Fault{{Host: host, Rate: 0.3, Err: reboundtest.ErrReset}}},
		{"recovered", nil},
	}
}

// rehearse plays phases against client, whose base is faults: each
// phase lasts d, with a call to url every 10 ms, one at a time (a call
// that takes longer delays the next). It writes each phase's calls and
// how many succeeded to w, and returns the successes of each phase.
func rehearse(w io.Writer, client *http.Client, faults *reboundtest.Faults, url string, phases []phase, d time.Duration) []int {
	var oks []int
	for _, p := range phases {
		if err := faults.Set(p.faults...); err != nil {
			fmt.Fprintln(w, err)
			return oks
		}
		n, ok := 0, 0
		start := time.Now()
		for next := start; next.Before(start.Add(d)); next = next.Add(every) {
			time.Sleep(time.Until(next)) // one call every 10 ms at most
			n++
			ctx, cancel := context.WithTimeout(context.Background(), d)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++
				}
			}
			cancel()
		}
		fmt.Fprintf(w, "%-10s %5d calls %5d ok\n", p.name, n, ok)
		oks = append(oks, ok)
	}
	return oks
}

// The demo's phases replayed against your own client in staging: build
// the client over a Faults, and turn the rehearsal on with a flag of
// your own. Each phase here lasts 10 s; what it prints depends on your
// service, so go test compiles this example but does not run it.
func ExampleFaults_rehearsal() {
	faults := &reboundtest.Faults{Seed: 1}
	client := &http.Client{Transport: rebound.NewTransport(faults, rebound.WithObserver(rebound.LogObserver(nil)))}
	if os.Getenv("REHEARSE") == "1" { // your flag
		rehearse(os.Stdout, client, faults, "https://payments.staging.internal/health",
			demoPhases("payments.staging.internal"), 10*time.Second)
	}
}

// TestRehearsal runs the rehearsal of ExampleFaults_rehearsal in a
// synctest bubble, 3 s of virtual time a phase, over a Script whose
// answers take 1 ms: the healthy phase's calls all succeed, the
// outage's all fail, and in the recovered phase the breaker's probe
// closes the circuit and calls succeed again.
func TestRehearsal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := &reboundtest.Script{Then: &reboundtest.Step{Delay: time.Millisecond}}
		faults := &reboundtest.Faults{Next: script, Seed: 1}
		client := &http.Client{Transport: rebound.NewTransport(faults)}
		var out strings.Builder
		oks := rehearse(&out, client, faults, "http://payments.test/", demoPhases("payments.test"), 3*time.Second)
		t.Log("\n" + out.String())
		require.Len(t, oks, 6)
		assert.Equal(t, 300, oks[0], "healthy: 3 s of 10 ms calls")
		assert.Zero(t, oks[1], "outage")
		assert.Positive(t, oks[2], "ratelimit")
		assert.Positive(t, oks[3], "flaky")
		assert.Positive(t, oks[4], "resets")
		assert.Positive(t, oks[5], "recovered")
	})
}
