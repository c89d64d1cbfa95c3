package storm_test

import (
	"fmt"
	"time"

	"github.com/rebound-http/rebound/bench/storm"
)

// The probability that a request waits, and the mean wait, in the
// default server model at 90 % load, as Erlang C gives them.
func ExampleMMcWait() {
	cfg := storm.ServerConfig{}
	p, _ := storm.ErlangC(storm.DefaultWorkers, 0.9*storm.DefaultWorkers)
	w, _ := storm.MMcWait(storm.DefaultWorkers, storm.DefaultService, 0.9)
	fmt.Printf("capacity %.0f/s, P(wait) %.3f, mean wait %v\n", cfg.Capacity(), p, w.Round(time.Millisecond))
	// Output: capacity 200/s, P(wait) 0.669, mean wait 33ms
}

// A part of the grid, as make storm STORM_GRID="..." names it.
func ExampleParseGrid() {
	g, err := storm.ParseGrid("libs=plain,rebound rho=0.9 n=10,10000 trigger=outage")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range g.Cells() {
		fmt.Println(c)
	}
	_, err = storm.ParseGrid("rho=1.5,x")
	fmt.Println(err)
	// Output:
	// plain/rho=0.90/N=10000/outage
	// rebound/rho=0.90/N=10000/outage
	// plain/rho=0.90/N=10/outage
	// rebound/rho=0.90/N=10/outage
	// storm: load "x" is not a number in (0, 2)
}
