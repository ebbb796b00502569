# ttp-worker — build, run and test.
#
#   make run    build, make sure a NATS server answers on 127.0.0.1:4222, run the worker
#   make test   everything CI checks: formatting, clippy, unit and integration tests
#
# Both install Debian's nats-server package when it is missing (as root, or through sudo).

SHELL := /bin/bash
CARGO ?= cargo
NATS_HOST ?= 127.0.0.1
NATS_PORT ?= 4222
# Where `make run` keeps the local nats-server's JetStream store, log and pid file.
RUN_DIR ?= $(CURDIR)/target/run

.PHONY: all build run test lint bench bench-tag bench-pipeline bench-e2e nats-server-installed local-nats stop-local-nats clean

all: build

build:
	$(CARGO) build --release --locked

run: build local-nats
	DECNET_BUS_URL=$${DECNET_BUS_URL:-nats://$(NATS_HOST):$(NATS_PORT)} ./target/release/ttp-worker

test: nats-server-installed lint
	$(CARGO) test --locked

# Benchmarks print measured figures; none of them is a pass/fail test.
bench: bench-tag bench-pipeline bench-e2e

# `ttp-worker tag` (release) on a 20,000-envelope corpus with DECNET's rule pack.
bench-tag:
	$(CARGO) bench --locked --bench tag_throughput

# The daemon's own work per event (tag, commit, announce), without the network.
bench-pipeline:
	$(CARGO) bench --locked --bench pipeline

# Publisher -> nats-server -> ttp-worker (release) -> SQLite -> ttp.tagged subscriber.
bench-e2e: nats-server-installed
	$(CARGO) bench --locked --bench end_to_end

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

# Debian installs the server to /usr/sbin, which is not on every user's PATH.
nats-server-installed:
	@if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; then exit 0; fi; \
	echo "nats-server is missing; installing the Debian package"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nats-server

# Starts a nats-server (with JetStream) on $(NATS_HOST):$(NATS_PORT) unless one answers already.
local-nats:
	@if (exec 3<>/dev/tcp/$(NATS_HOST)/$(NATS_PORT)) 2>/dev/null; then \
		echo "NATS answers on $(NATS_HOST):$(NATS_PORT)"; exit 0; fi; \
	$(MAKE) --no-print-directory nats-server-installed; \
	mkdir -p $(RUN_DIR); \
	server=$$(command -v nats-server || echo /usr/sbin/nats-server); \
	echo "starting $$server on $(NATS_HOST):$(NATS_PORT) (log: $(RUN_DIR)/nats-server.log)"; \
	nohup $$server -a $(NATS_HOST) -p $(NATS_PORT) -js -sd $(RUN_DIR)/jetstream \
		-P $(RUN_DIR)/nats-server.pid >$(RUN_DIR)/nats-server.log 2>&1 & \
	for _ in $$(seq 50); do \
		if (exec 3<>/dev/tcp/$(NATS_HOST)/$(NATS_PORT)) 2>/dev/null; then exit 0; fi; sleep 0.1; done; \
	echo "nats-server did not come up; see $(RUN_DIR)/nats-server.log" >&2; exit 1

stop-local-nats:
	@if [ -f $(RUN_DIR)/nats-server.pid ]; then kill $$(cat $(RUN_DIR)/nats-server.pid) && rm -f $(RUN_DIR)/nats-server.pid; fi

clean:
	$(CARGO) clean
