package reboundtest_test

import (
	"fmt"
	"io"
	"net/http"

	"github.com/rebound-http/rebound"
	"github.com/rebound-http/rebound/reboundtest"
)

// A Script answers each host with its steps in turn and records what it
// received. Here the chain, with every wait zero, retries a 503 and a
// reset and returns the third answer. (Inside a testing/synctest bubble
// NoWait is not needed: the waits pass in virtual time.)
func ExampleScript() {
	script := &reboundtest.Script{Hosts: map[string][]reboundtest.Step{
		"api.test": {
			{Status: 503, Header: http.Header{"Retry-After": {"2"}}},
			{Err: reboundtest.ErrReset},
			{Status: 200, Body: `{"id": 1}`},
		},
	}}
	client := &http.Client{Transport: rebound.NewTransport(script, reboundtest.NoWait())}

	resp, err := client.Get("http://api.test/v1/things/1")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	for _, c := range script.Calls() {
		fmt.Println("attempt", c.Attempt, c.Method, c.URL)
	}
	fmt.Println("bodies left open:", script.Open())
	// Output:
	// 200 {"id": 1}
	// attempt 1 GET http://api.test/v1/things/1
	// attempt 2 GET http://api.test/v1/things/1
	// attempt 3 GET http://api.test/v1/things/1
	// bodies left open: 0
}
