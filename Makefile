# Load benchmarks (issue 7). Each target runs every row of the issue once:
#
#   make bench        modest sizes (a few minutes; fits a small shared machine)
#   make bench-full   the issue's target sizes (needs 2+ cores and ~25,000 fds in all)
#   make bench-smoke  tiny sizes, seconds each: does every scenario still run?
#   make bench-soak   10 minutes of mixed traffic: memory and goroutines flat,
#                     every publication delivered exactly once (SOAK=10m)
#
# Every run starts its own server (cmd/huddle pinned to core 0, GOMAXPROCS=1,
# with the flags the scenario needs; clients on the other cores), prints a
# table and writes JSON to $(BENCH_OUT)/<row>.json. Extra flags for every
# run go in BENCH_FLAGS, e.g. make bench BENCH_FLAGS='-quiet -codec json'.
# One row alone: make bench-broadcast-1k (see the rules below).

GO          ?= go
BIN         ?= bin
BENCH_OUT   ?= $(BIN)/bench-results
BENCH_FLAGS ?=
HB           = $(BIN)/huddle-bench
F            = -server-bin $(BIN)/huddle $(BENCH_FLAGS)

ROWS = idle connect broadcast-1k broadcast-10k-1 broadcast-10k-10 whisper rooms cursors presence presence-1k-watchers slow
RUNS ?= 3

.PHONY: bench bench-full bench-smoke bench-soak bench-build bench-results bench-connect-rpc $(addprefix bench-,$(ROWS))

bench-build:
	$(GO) build -o $(BIN)/huddle ./cmd/huddle
	$(GO) build -o $(BIN)/huddle-bench ./cmd/huddle-bench
	$(GO) build -o $(BIN)/huddle-bench-rpc ./bench/cmd/huddle-bench-rpc
	@mkdir -p $(BENCH_OUT)

# Modest sizes: the same rows, scaled down.
bench: bench-build
	$(HB) idle      $(F) -n 3000 -json $(BENCH_OUT)/idle.json
	$(HB) connect   $(F) -n 3000 -concurrency 200 -json $(BENCH_OUT)/connect.json
	$(HB) broadcast $(F) -n 1000 -rate 10 -duration 5s -size 100 -json $(BENCH_OUT)/broadcast-1k.json
	$(HB) broadcast $(F) -n 2000 -rate 1 -duration 10s -size 100 -json $(BENCH_OUT)/broadcast-10k-1.json
	$(HB) broadcast $(F) -n 2000 -rate 10 -duration 5s -size 100 -json $(BENCH_OUT)/broadcast-10k-10.json
	$(HB) whisper   $(F) -pairs 100 -rate 5000 -duration 5s -json $(BENCH_OUT)/whisper.json
	$(HB) rooms     $(F) -rooms 200 -group 10 -start 500 -factor 2 -max-rate 16000 -step 3s -json $(BENCH_OUT)/rooms.json
	$(HB) cursors   $(F) -rooms 10 -group 20 -hz 30 -duration 5s -json $(BENCH_OUT)/cursors.json
	$(HB) presence  $(F) -members 2000 -rate 50 -duration 10s -json $(BENCH_OUT)/presence.json
	$(HB) slow      $(F) -good 200 -slow 20 -json $(BENCH_OUT)/slow.json

# The issue's target sizes, one rule per row.
bench-full: bench-build $(addprefix bench-,$(ROWS))

bench-idle: bench-build
	$(HB) idle $(F) -n 15000 -json $(BENCH_OUT)/idle.json
bench-connect: bench-build
	$(HB) connect $(F) -n 10000 -concurrency 500 -json $(BENCH_OUT)/connect.json
bench-broadcast-1k: bench-build
	$(HB) broadcast $(F) -n 1000 -rate 10 -duration 30s -size 100 -json $(BENCH_OUT)/broadcast-1k.json
bench-broadcast-10k-1: bench-build
	$(HB) broadcast $(F) -n 10000 -rate 1 -duration 60s -size 100 -json $(BENCH_OUT)/broadcast-10k-1.json
bench-broadcast-10k-10: bench-build
	$(HB) broadcast $(F) -n 10000 -rate 10 -duration 20s -size 100 -json $(BENCH_OUT)/broadcast-10k-10.json
bench-whisper: bench-build
	$(HB) whisper $(F) -pairs 500 -rate 50000 -duration 10s -json $(BENCH_OUT)/whisper.json
bench-rooms: bench-build
	$(HB) rooms $(F) -rooms 1000 -group 10 -start 500 -factor 1.5 -max-rate 50000 -step 5s -slo 100ms -json $(BENCH_OUT)/rooms.json
bench-cursors: bench-build
	$(HB) cursors $(F) -rooms 50 -group 20 -hz 30 -duration 10s -json $(BENCH_OUT)/cursors.json
bench-presence: bench-build
	$(HB) presence $(F) -streams 1 -members 10000 -rate 200 -duration 20s -json $(BENCH_OUT)/presence.json
bench-presence-1k-watchers: bench-build
	$(HB) presence $(F) -streams 1 -members 10000 -watchers 1000 -rate 200 -duration 20s -json $(BENCH_OUT)/presence-1k-watchers.json
bench-slow: bench-build
	$(HB) slow $(F) -good 500 -slow 50 -rate 200 -size 2000 -baseline 5s -slowdown 15s -json $(BENCH_OUT)/slow.json

# /cable connects through an AnyCable HTTP RPC backend (issue 15; not part
# of bench-full): huddle-bench-rpc serves the backend (pinned with the
# clients) and starts Huddle with --rpc-url pointing at it; clients send a
# bench_user cookie and subscribe to BenchChannel. bench/RESULTS.md shows
# the same run against anycable-go.
bench-connect-rpc: bench-build
	$(BIN)/huddle-bench-rpc connect $(F) -n 10000 -concurrency 500 -json $(BENCH_OUT)/connect-rpc.json

# bench/RESULTS.md: every row of bench-full $(RUNS) times (run by run, so
# slow drifts of the machine spread over all rows), then the medians.
# About 10 minutes a run.
bench-results: bench-build
	@for i in $$(seq 1 $(RUNS)); do \
		$(MAKE) --no-print-directory bench-full BENCH_OUT=$(BENCH_OUT)/run$$i BENCH_FLAGS='-quiet $(BENCH_FLAGS)' || exit 1; \
	done
	$(HB) summarize $(addprefix $(BENCH_OUT)/run,$(shell seq 1 $(RUNS))) | tee $(BENCH_OUT)/summary.md

# Tiny sizes: seconds per scenario.
bench-smoke: bench-build
	$(HB) idle      $(F) -n 200 -settle 1s -json $(BENCH_OUT)/idle.json
	$(HB) connect   $(F) -n 200 -concurrency 50 -json $(BENCH_OUT)/connect.json
	$(HB) broadcast $(F) -n 200 -rate 50 -duration 2s -json $(BENCH_OUT)/broadcast.json
	$(HB) whisper   $(F) -pairs 100 -rate 2000 -duration 2s -json $(BENCH_OUT)/whisper.json
	$(HB) rooms     $(F) -rooms 20 -group 10 -rates 200,1000 -step 2s -json $(BENCH_OUT)/rooms.json
	$(HB) cursors   $(F) -rooms 5 -group 20 -hz 30 -duration 2s -json $(BENCH_OUT)/cursors.json
	$(HB) presence  $(F) -members 200 -rate 50 -duration 3s -settle 1s -json $(BENCH_OUT)/presence.json
	$(HB) slow      $(F) -good 100 -slow 10 -baseline 2s -slowdown 12s -json $(BENCH_OUT)/slow.json
	$(HB) soak      $(F) -duration 15s -sample 1s -subscribers 10 -reconnect-every 3s -slow 1 -slow-every 2s -slow-pause 8s -bulk-rate 40 -json $(BENCH_OUT)/soak-smoke.json

# Mixed traffic for $(SOAK) (not part of bench-full): the server's RSS and
# goroutines sampled every 5 s, their growth after the warm-up, and every
# publication checked exactly once, in order, across reconnects.
SOAK ?= 10m
bench-soak: bench-build
	$(HB) soak $(F) -duration $(SOAK) -json $(BENCH_OUT)/soak.json
