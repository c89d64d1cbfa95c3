// Command overhead turns the output of interleaved benchmark rounds (make
// bench's bench.txt) into the overhead table of docs/benchmarks.md: for
// every benchmark whose sub-benchmarks end in lib=NAME, each library's
// overhead over lib=bare, and its ratio to the overheads of the peers the
// goals name.
//
// Rounds are paired: a round is one run of the test binary (it starts at
// a "goos:" line), in which every library ran once, close in time to
// bare. The overhead of a library in a round is its figure minus bare's
// in that round, so a slow moment of the shared machine that lasted a
// whole round cancels out. The table gives the median over rounds and a
// 95 % bootstrap interval (the rounds resampled 2,000 times); a ratio's
// interval is that of the ratio of the medians. With -unit cpu-ns/op (the
// default) the figures are CPU time per call, which other processes on
// the machine disturb far less than wall time (-unit sec/op).
//
//	go run ./cmd/overhead -against retryablehttp,gobreaker ../bench.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func main() {
	unit := flag.String("unit", "cpu-ns/op", "the figure compared: cpu-ns/op, ns/op or allocs/op")
	against := flag.String("against", "retryablehttp,gobreaker", "peers whose overhead each library's is divided by")
	base := flag.String("base", "bare", "the library every overhead is measured from")
	flag.Parse()
	var in io.Reader = os.Stdin
	if flag.NArg() > 0 {
		var readers []io.Reader
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer f.Close()
			readers = append(readers, f)
		}
		in = io.MultiReader(readers...)
	}
	runs, err := parse(in, *unit)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	report(os.Stdout, runs, *base, strings.Split(*against, ","), *unit)
}

// runs maps a benchmark (its name without the lib= part) and a library
// to the figure of every round, NaN-free, indexed by round.
type runs map[string]map[string]map[int]float64

// parse reads benchmark lines, counting a new round at every "goos:"
// line, and keeps the figure of unit for every name ending in lib=NAME.
func parse(r io.Reader, unit string) (runs, error) {
	out := runs{}
	round := -1
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "goos:") {
			round++
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		i := strings.LastIndex(name, "/lib=")
		if i < 0 {
			continue
		}
		bench, lib := name[:i], name[i+len("/lib="):]
		for j := 2; j+1 < len(f); j += 2 {
			if f[j+1] != unit {
				continue
			}
			v, err := strconv.ParseFloat(f[j], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", line, err)
			}
			if out[bench] == nil {
				out[bench] = map[string]map[int]float64{}
			}
			if out[bench][lib] == nil {
				out[bench][lib] = map[int]float64{}
			}
			out[bench][lib][max(round, 0)] = v
		}
	}
	return out, sc.Err()
}

// report prints one table per benchmark.
func report(w io.Writer, all runs, base string, against []string, unit string) {
	benches := make([]string, 0, len(all))
	for b := range all {
		benches = append(benches, b)
	}
	sort.Strings(benches)
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: the same input gives the same table
	for _, b := range benches {
		libs := all[b]
		bare, ok := libs[base]
		if !ok {
			continue
		}
		names := make([]string, 0, len(libs))
		for l := range libs {
			names = append(names, l)
		}
		sort.Strings(names)
		// Overhead per library and round: paired differences with
		// bare's figure of the same round.
		var rounds []int
		for round := range bare {
			rounds = append(rounds, round)
		}
		slices.Sort(rounds)
		over := map[string]map[int]float64{}
		for _, l := range names {
			over[l] = map[int]float64{}
			for _, round := range rounds {
				if v, ok := libs[l][round]; ok {
					over[l][round] = v - bare[round]
				}
			}
		}
		fmt.Fprintf(w, "%s (%s, %d rounds)\n", b, unit, len(bare))
		fmt.Fprintf(w, "| library | %s | overhead over %s [95 %% CI] |", unit, base)
		for _, a := range against {
			fmt.Fprintf(w, " ÷ %s's [95 %% CI] |", a)
		}
		fmt.Fprintln(w)
		fmt.Fprint(w, "| --- | ---: | ---: |")
		for range against {
			fmt.Fprint(w, " ---: |")
		}
		fmt.Fprintln(w)
		for _, l := range names {
			vals := values(libs[l])
			fmt.Fprintf(w, "| %s | %s | ", l, num(median(vals)))
			if l == base {
				fmt.Fprint(w, "— |")
			} else {
				lo, hi := bootstrap(rng, rounds, over[l], nil)
				fmt.Fprintf(w, "%s [%s, %s] |", num(median(values(over[l]))), num(lo), num(hi))
			}
			for _, a := range against {
				if l == base || l == a || len(over[a]) == 0 {
					fmt.Fprint(w, " — |")
					continue
				}
				den := median(values(over[a]))
				if den == 0 {
					fmt.Fprint(w, " — |") // no ratio to a peer that adds nothing
					continue
				}
				r := median(values(over[l])) / den
				lo, hi := bootstrap(rng, rounds, over[l], over[a])
				fmt.Fprintf(w, " %.2f [%.2f, %.2f] |", r, lo, hi)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// bootstrap returns a 95 % percentile interval of the median of x over
// rounds, or of median(x)/median(y) when y is not nil, from 2,000
// resamplings of the rounds (x and y resampled together, keeping their
// pairing). A round missing from x or y is left out of the resample.
func bootstrap(rng *rand.Rand, rounds []int, x, y map[int]float64) (lo, hi float64) {
	const n = 2000
	stats := make([]float64, 0, n)
	var bx, by []float64
	for range n {
		bx, by = bx[:0], by[:0]
		for range rounds {
			r := rounds[rng.IntN(len(rounds))]
			vx, okx := x[r]
			vy, oky := y[r]
			if !okx || y != nil && !oky {
				continue
			}
			bx, by = append(bx, vx), append(by, vy)
		}
		s := median(bx)
		if y != nil {
			if m := median(by); m != 0 {
				s /= m
			} else {
				continue // a resample in which the peer added nothing has no ratio
			}
		}
		stats = append(stats, s)
	}
	if len(stats) == 0 {
		return math.NaN(), math.NaN()
	}
	slices.Sort(stats)
	return stats[len(stats)*25/1000], stats[len(stats)*975/1000-1]
}

func values(m map[int]float64) []float64 {
	out := make([]float64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// num formats a figure with three significant digits at most.
func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
