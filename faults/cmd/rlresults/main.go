// Command rlresults reads the rows the rate-limiter scenarios of package
// faults append to the file named by REBOUND_FAULTS_RESULTS (one JSON
// object a line, every run appended to the same file) and prints, per
// scenario, a Markdown table of the median of each column over the runs,
// with the range of goodput and the most early attempts any run saw.
//
//	rlresults results.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

type result struct {
	Scenario     string  `json:"scenario"`
	Client       string  `json:"client"`
	Lag          float64 `json:"lag_ms"`
	Goodput      float64 `json:"goodput"`
	OfLimit      float64 `json:"of_limit"`
	Attempts     float64 `json:"attempts"`
	Refused      float64 `json:"refused"`
	P50          float64 `json:"p50_ms"`
	P99          float64 `json:"p99_ms"`
	P99Unrefused float64 `json:"p99_unrefused_ms"`
	OK           float64 `json:"ok"`
	Early        int64   `json:"early"`
	Target       float64 `json:"target"`
	Quota        bool    `json:"quota"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: rlresults results.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	var scenarios []string
	clients := map[string][]string{}
	rows := map[[2]string][]result{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(os.Stderr, "line %d: %v\n", n, err)
			os.Exit(1)
		}
		if _, ok := clients[r.Scenario]; !ok {
			scenarios = append(scenarios, r.Scenario)
		}
		k := [2]string{r.Scenario, r.Client}
		if _, ok := rows[k]; !ok {
			clients[r.Scenario] = append(clients[r.Scenario], r.Client)
		}
		rows[k] = append(rows[k], r)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	summary(scenarios, clients, rows)
	for _, s := range scenarios {
		open := rows[[2]string{s, clients[s][0]}][0].Goodput == 0 && rows[[2]string{s, clients[s][0]}][0].OfLimit == 0
		var lags []float64
		for _, c := range clients[s] {
			for _, r := range rows[[2]string{s, c}] {
				lags = append(lags, r.Lag)
			}
		}
		fmt.Printf("### %s\n\nmachine lag: median %.0f ms, worst %.0f ms\n\n", s, median(lags), slices.Max(lags))
		if open {
			fmt.Println("| client | runs | calls | ok | refused | p50 | p99 | p99, calls never refused | early (most) |")
			fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		} else {
			fmt.Println("| client | runs | goodput/s (min–max) | of limit | attempts/s | refused | p50 | p99 | ok | early (most) |")
			fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		}
		for _, c := range clients[s] {
			rs := rows[[2]string{s, c}]
			col := func(f func(result) float64) float64 {
				var xs []float64
				for _, r := range rs {
					xs = append(xs, f(r))
				}
				return median(xs)
			}
			var early int64
			var gs []float64
			for _, r := range rs {
				early = max(early, r.Early)
				gs = append(gs, r.Goodput)
			}
			if open {
				fmt.Printf("| %s | %d | %.0f | %.1f %% | %.1f %% | %s | %s | %s | %d |\n", c, len(rs), col(func(r result) float64 { return r.Attempts }),
					100*col(func(r result) float64 { return r.OK }), 100*col(func(r result) float64 { return r.Refused }),
					msStr(col(func(r result) float64 { return r.P50 })), msStr(col(func(r result) float64 { return r.P99 })),
					msStr(col(func(r result) float64 { return r.P99Unrefused })), early)
				continue
			}
			fmt.Printf("| %s | %d | %.1f (%.1f–%.1f) | %.0f %% | %.1f | %.1f %% | %s | %s | %.1f %% | %d |\n", c, len(rs),
				median(gs), slices.Min(gs), slices.Max(gs), 100*col(func(r result) float64 { return r.OfLimit }),
				col(func(r result) float64 { return r.Attempts }), 100*col(func(r result) float64 { return r.Refused }),
				msStr(col(func(r result) float64 { return r.P50 })), msStr(col(func(r result) float64 { return r.P99 })),
				100*col(func(r result) float64 { return r.OK }), early)
		}
		fmt.Println()
	}
}

// median returns the median of xs (the mean of the middle two of an even
// count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// msStr prints a latency in milliseconds; negative is "not measured".
func msStr(ms float64) string {
	switch {
	case ms < 0:
		return "–"
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.2f s", ms/1000)
}

// summary prints, for every closed-loop scenario with a target, the
// default chain's medians against issue 19's targets.
func summary(scenarios []string, clients map[string][]string, rows map[[2]string][]result) {
	fmt.Println("| scenario | rebound goodput, of the limit | target | of plain's goodput (target ≥ 90 %) | attempts refused | early attempts |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, s := range scenarios {
		rb, pl := rows[[2]string{s, "rebound"}], rows[[2]string{s, "plain"}]
		if len(rb) == 0 || len(pl) == 0 || rb[0].Target == 0 {
			continue
		}
		var of, vsPlain, refused []float64
		var early int64
		for i, r := range rb {
			of = append(of, r.OfLimit)
			refused = append(refused, r.Refused)
			early = max(early, r.Early)
			if i < len(pl) && pl[i].Goodput > 0 {
				vsPlain = append(vsPlain, r.Goodput/pl[i].Goodput)
			}
		}
		target := fmt.Sprintf("≥ %.0f %%", 100*rb[0].Target)
		met := median(of) >= rb[0].Target
		if rb[0].Quota {
			target += ", ≤ 1 % refused"
			met = met && median(refused) <= 0.01
		}
		word := "missed"
		if met {
			word = "met"
		}
		fmt.Printf("| %s | %.0f %% (%s) | %s | %.0f %% | %.1f %% | %d |\n", s, 100*median(of), word, target, 100*median(vsPlain), 100*median(refused), early)
	}
	fmt.Println()
}
