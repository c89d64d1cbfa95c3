package rebound_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
	"github.com/rebound-http/rebound/transport"
)

// Reload swaps the policies of a live Transport: a policy given again
// unchanged keeps its breakers, budget, admission and learned latencies;
// a changed one keeps the parts whose configuration did not change.
func ExampleTransport_Reload() {
	report := rebound.Observer{Operator: func(ev rebound.OperatorEvent) {
		fmt.Printf("%s %q: %s %v\n", ev.Action, ev.Pattern, ev.Detail, ev.Reset)
	}}
	payments := rebound.Policy{Retry: transport.Config{MaxAttempts: 2}}
	rt, err := rebound.New(nil, rebound.WithHostPolicy("payments.example.com", payments), rebound.WithObserver(report))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.CloseIdleConnections()

	// The default policy gets another retry count; payments' breaker
	// configuration changes; search is new.
	payments.Breaker.OpenTimeout = 5 * time.Second
	err = rt.Reload(
		rebound.WithPolicy(rebound.Policy{Retry: transport.Config{MaxAttempts: 4}}),
		rebound.WithHostPolicy("payments.example.com", payments),
		rebound.WithHostPolicy("search.example.com", rebound.Policy{}),
	)
	fmt.Println("reload:", err)

	// An invalid configuration leaves the one in force.
	err = rt.Reload(rebound.WithHostPolicy("https://payments.example.com/", payments))
	var ce *rebound.ConfigError
	fmt.Println("invalid:", errors.As(err, &ce))
	_, p := rt.PolicyFor("payments.example.com")
	fmt.Println("payments open timeout:", p.Breaker.OpenTimeout)
	// Output:
	// reload "": policy changed: state kept []
	// reload "payments.example.com": policy changed: state reset where its configuration changed [breaker]
	// reload "search.example.com": policy added []
	// reload: <nil>
	// reload "": invalid configuration: kept the one in force []
	// invalid: true
	// payments open timeout: 5s
}

// ReloadFile reloads from a policy file, on demand: on SIGHUP, from an
// admin endpoint, or from a file watcher of your choice.
func ExampleTransport_ReloadFile() {
	dir, _ := os.MkdirTemp("", "rebound")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "policies.json")
	os.WriteFile(path, []byte(`{"hosts": {"payments.example.com": {"max_attempts": 2}}}`), 0o600)

	rt := rebound.NewTransport(nil)
	defer rt.CloseIdleConnections()
	if err := rt.ReloadFile(path); err != nil {
		fmt.Println(err)
		return
	}
	pattern, p := rt.PolicyFor("payments.example.com")
	fmt.Println(pattern, p.Retry.MaxAttempts)

	os.WriteFile(path, []byte(`{"hosts": {"payments.example.com": {"max_attempt": 3}}}`), 0o600)
	err := rt.ReloadFile(path)
	fmt.Println(err != nil)
	_, p = rt.PolicyFor("payments.example.com")
	fmt.Println(p.Retry.MaxAttempts)
	// Output:
	// payments.example.com 2
	// true
	// 2
}

// Isolate takes a host out of traffic: its calls fail at once, unsent,
// whatever its breaker says, until the time is up, Isolate(host, 0) or
// Reset.
func ExampleTransport_Isolate() {
	script := &reboundtest.Script{Then: &reboundtest.Step{Body: "ok"}}
	rt := rebound.NewTransport(script)
	client := &http.Client{Transport: rt}

	if err := rt.Isolate("payments.example.com", 10*time.Minute); err != nil {
		fmt.Println(err)
		return
	}
	_, err := client.Get("https://payments.example.com/charges")
	fmt.Println(errors.Is(err, rebound.ErrIsolated))
	var ie *rebound.IsolatedError
	if errors.As(err, &ie) {
		fmt.Println(ie.Host, ie.RetryIn > 9*time.Minute)
	}
	fmt.Println(rt.Ready("payments.example.com") != nil)
	fmt.Println("refused:", rt.Stats().Total.Refusals[rebound.GateIsolated], "sent:", script.Count("payments.example.com"))

	reset, _ := rt.Reset("payments.example.com")
	fmt.Println("reset:", reset)
	resp, err := client.Get("https://payments.example.com/charges")
	if err == nil {
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// true
	// payments.example.com true
	// true
	// refused: 1 sent: 0
	// reset: [isolation]
	// 200
}

// AdminHandler serves what the Transport knows of each host, read-only:
// a page for a person, JSON for a program. Mount it on an admin port.
func ExampleTransport_AdminHandler() {
	script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
		"payments.example.com": {{Status: 503}, {Status: 200}},
		"search.example.com":   {{Status: 200}},
	}}
	rt := rebound.NewTransport(script, reboundtest.NoWait(),
		rebound.WithHostPolicy("*.example.com", rebound.Policy{}))
	client := &http.Client{Transport: rt}
	for _, url := range []string{"https://payments.example.com/charges?card=4242", "https://search.example.com/"} {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
		}
	}

	admin := http.NewServeMux()
	admin.Handle("/debug/rebound", rt.AdminHandler())
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/rebound", nil))
	page, _ := io.ReadAll(rec.Body)
	_, table, _ := strings.Cut(string(page), "\n\n") // after the time line
	fmt.Print(table)
	// Output:
	// HOST                  POLICY         CIRCUIT  RETRY BALANCE  CALLS  ATTEMPTS  REFUSED  P50/P99  NOTE
	// payments.example.com  *.example.com  closed   99.4           1      2         0        -
	// search.example.com    *.example.com  closed   99.4           1      1         0        -
}
