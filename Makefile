# rebound — the two commands a new user needs are `make demo` and `make test`.

GO      ?= go
# Every module of the repository: the core and the ones with heavier
# dependencies (bench/, ...), each tested on its own.
MODULES := $(shell find . -name go.mod -not -path './.git/*' -exec dirname {} \; | sort)
FUZZTIME ?= 30s
COUNT    ?= 6

.PHONY: test demo demo-docs bench bench-all fuzz lint tools storm

test:
	@set -e; for m in $(MODULES); do \
		echo "== go test -race $$m"; \
		(cd $$m && $(GO) test -race -count=1 ./...); \
	done

# An outage replayed against a plain client, a naive retry loop,
# go-retryablehttp, failsafe-go and rebound (bench/cmd/demo): about 50 s,
# a table, and a chart under demo-out/. DEMOFLAGS="-scale 3" for longer.
DEMOFLAGS ?=
demo:
	cd bench && $(GO) run ./cmd/demo -out $(CURDIR)/demo-out $(DEMOFLAGS)

# make demo, then the chart and the hash of the code that drew it into
# docs/ (a test of bench/cmd/demo fails while they are older than the code).
demo-docs: demo
	cp demo-out/demo.png demo-out/demo.svg demo-out/demo.src docs/

# rebound against its peers (bench/): success-path overhead of calls made
# as programs make them (a fresh request per call, through http.Client.Do
# and RoundTrip; stub and loopback, sequential and parallel; GET and POST
# 1 KiB), the closed breaker against sony/gobreaker, and the leak probe
# (connections and goroutines left after 20 calls to a 503 server).
# $(BENCHCOUNT) interleaved rounds of one run each (every round a new
# process, its libraries in a new random order), so that a noisy moment
# hits every library alike, written to bench.txt and summarised by
# benchstat (installed on first use) and by bench/cmd/overhead: each
# library's overhead over bare, paired by round, with bootstrap intervals
# and its ratio to go-retryablehttp's and the gobreaker wrapper's (the
# table of docs/benchmarks.md). About 4 minutes.
BENCHCOUNT ?= 8
BENCHTIME  ?= 300ms
bench: tools
	@set -e; cd bench; $(GO) test -c -o peers.test .; rm -f ../bench.txt; \
	for i in $$(seq $(BENCHCOUNT)); do \
		echo "== round $$i of $(BENCHCOUNT)"; \
		./peers.test -test.run '^$$' -test.bench '^(BenchmarkOverhead|BenchmarkLoopback|BenchmarkBreakerGate)$$' \
			-test.benchmem -test.benchtime $(BENCHTIME) -test.count 1 >> ../bench.txt; \
		./peers.test -test.run '^$$' -test.bench 'LeakProbe' -test.benchtime 3x -test.count 1 >> ../bench.txt; \
	done; rm -f peers.test
	benchstat -col '/lib@(bare rebound rebound-nokeys floor gobreaker retryablehttp failsafe)' bench.txt
	benchstat -filter '.name:BreakerGate OR .name:LeakProbe' bench.txt
	cd bench && $(GO) run ./cmd/overhead ../bench.txt

# The fleet-scale retry-storm simulator (bench/storm): every library on
# the same storms, ρ × N × trigger, in virtual time (testing/synctest, so
# a test, not a command), the M/M/c check of its server model, the retry
# budget's trade-off, stacked services (depth 1-3) and the reality check
# (three cells replayed on loopback sockets in real time). Writes
# docs/storm/ (results.md, tradeoff.md, stack.md, reality.md, heat maps,
# goodput charts). About four minutes on 2 cores.
# STORM_GRID="libs=plain,rebound rho=0.9 n=10,1000 retryafter=1s" for a part.
STORM_GRID ?= full
STORM_OUT  ?= $(CURDIR)/docs/storm
storm:
	cd bench && STORM_GRID="$(STORM_GRID)" STORM_TRADEOFF=1 STORM_STACK=1 STORM_REALITY=1 STORM_OUT="$(STORM_OUT)" \
		$(GO) test -count=1 -timeout 20m -run 'TestStormGrid|TestServerMatchesMMc|TestAmplificationTradeoff|TestStormStack|TestRealityCheck' ./storm

# Every benchmark of every module, -count $(COUNT), summarised by benchstat.
bench-all: tools
	@set -e; rm -f bench-all.txt; for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) ./...) | tee -a bench-all.txt; \
	done
	benchstat bench-all.txt

# Each fuzz target of every module for $(FUZZTIME).
fuzz:
	@set -e; for m in $(MODULES); do \
		for pkg in $$(cd $$m && $(GO) list ./...); do \
			for f in $$(cd $$m && $(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
				echo "== $$pkg $$f"; \
				(cd $$m && $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg); \
			done; \
		done; \
	done

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

tools:
	@command -v benchstat >/dev/null || $(GO) install golang.org/x/perf/cmd/benchstat@latest
