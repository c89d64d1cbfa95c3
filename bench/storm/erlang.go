package storm

import (
	"fmt"
	"time"
)

// ErlangC returns the probability that an arriving request waits in an
// M/M/c queue with c workers and an offered load of a = λ·S erlangs
// (arrival rate times mean service time), for a < c. It uses the
// Erlang B recursion, which stays exact in floating point for large c.
func ErlangC(c int, a float64) (float64, error) {
	if c < 1 || !(a > 0 && a < float64(c)) {
		return 0, fmt.Errorf("storm: Erlang C needs c ≥ 1 and 0 < a < c, got c=%d a=%g", c, a)
	}
	b := 1.0 // Erlang B for 0 servers
	for k := 1; k <= c; k++ {
		b = a * b / (float64(k) + a*b)
	}
	rho := a / float64(c)
	return b / (1 - rho + rho*b), nil
}

// MMcWait returns the mean time a request waits for a worker in an M/M/c
// queue with c workers, mean service time s and utilisation rho
// (λ·s/c): ErlangC · s / (c − λ·s).
func MMcWait(c int, s time.Duration, rho float64) (time.Duration, error) {
	a := rho * float64(c)
	p, err := ErlangC(c, a)
	if err != nil {
		return 0, err
	}
	return time.Duration(p * float64(s) / (float64(c) - a)), nil
}
