# ttp-worker — build, run and test.
#
#   make run    build, make sure a NATS server answers on 127.0.0.1:4222, run the worker
#   make test   everything CI checks: formatting, clippy, unit, integration and package tests
#   make deb    the Debian package, in target/debian/ (installs cargo-deb when missing)
#   make deb-test  builds the package, runs lintian on it, installs it into a throw-away root
#               and checks it there (packaging/tests/; needs root and Debian's tools)
#   make man    regenerates packaging/ttp-worker.1 from the command-line definition
#   make footprint  start time and idle memory of the package's binary
#
# Both install Debian's nats-server package when it is missing (as root, or through sudo).

SHELL := /bin/bash
CARGO ?= cargo
NATS_HOST ?= 127.0.0.1
NATS_PORT ?= 4222
# Where `make run` keeps its tag store and the local nats-server's JetStream store, log and pid
# file: inside the checkout, so that each clone starts afresh and `make clean` clears it.
RUN_DIR ?= $(CURDIR)/target/run

.PHONY: all build run test lint bench bench-tag bench-pipeline bench-e2e bench-decnet bench-bridge nats-server-installed test-tools-installed \
	local-nats stop-local-nats clean deb deb-test man footprint cargo-deb-installed

all: build

build:
	$(CARGO) build --release --locked

run: build local-nats
	@echo "tag store: $${DECNET_TTP_DB:-$(RUN_DIR)/ttp.db}; NATS log: $(RUN_DIR)/nats-server.log"
	@echo "Ctrl-C stops the worker; the NATS server keeps running until 'make stop-local-nats'"
	DECNET_BUS_URL=$${DECNET_BUS_URL:-nats://$(NATS_HOST):$(NATS_PORT)} \
		DECNET_TTP_DB=$${DECNET_TTP_DB:-$(RUN_DIR)/ttp.db} ./target/release/ttp-worker

# Every test: lint, unit and integration tests, then the package tests (lintian, the unit's
# sandbox, install/upgrade/purge in a throw-away root). The package tests need root and
# Debian's tools; without root they are skipped with a message saying so.
test: nats-server-installed test-tools-installed lint
	$(CARGO) test --locked
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory deb-test; \
	else echo "SKIPPED: make deb-test (the package tests) needs root"; fi

# Benchmarks print measured figures; none of them is a pass/fail test.
bench: bench-tag bench-pipeline bench-e2e bench-decnet bench-bridge

# `ttp-worker tag` (release) on a 20,000-envelope corpus with DECNET's rule pack.
bench-tag:
	$(CARGO) bench --locked --bench tag_throughput

# The daemon's own work per event (tag, commit, announce), without the network.
bench-pipeline:
	$(CARGO) bench --locked --bench pipeline

# Publisher -> nats-server -> ttp-worker (release) -> SQLite -> ttp.tagged subscriber.
bench-e2e: nats-server-installed
	$(CARGO) bench --locked --bench end_to_end

# End to end into DECNET's own SQLite database (DECNET's code makes it, from PyPI).
bench-decnet: nats-server-installed
	$(CARGO) bench --locked --bench decnet_db

bench-bridge: nats-server-installed
	$(CARGO) bench --locked --bench bridge

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

# Debian installs the server to /usr/sbin, which is not on every user's PATH.
nats-server-installed:
	@if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; then exit 0; fi; \
	echo "nats-server is missing; installing the Debian package"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nats-server

# What the DECNET tests use besides nats-server: a MariaDB server they run themselves (no
# system service), Python's venv for DECNET's own code, openssl for the TLS test's certificates.
test-tools-installed:
	@need=""; \
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need="$$need mariadb-server"; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || need="$$need python3-venv"; \
	command -v openssl >/dev/null || need="$$need openssl"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	echo "installing the Debian packages the tests need:$$need"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need

# Starts a nats-server (with JetStream) on $(NATS_HOST):$(NATS_PORT) unless one answers already,
# in a session of its own: a terminal's Ctrl-C goes to its foreground process group, and the
# server is not in it.
local-nats:
	@if (exec 3<>/dev/tcp/$(NATS_HOST)/$(NATS_PORT)) 2>/dev/null; then \
		echo "NATS answers on $(NATS_HOST):$(NATS_PORT)"; exit 0; fi; \
	$(MAKE) --no-print-directory nats-server-installed; \
	mkdir -p $(RUN_DIR); \
	server=$$(command -v nats-server || echo /usr/sbin/nats-server); \
	echo "starting $$server on $(NATS_HOST):$(NATS_PORT) (log: $(RUN_DIR)/nats-server.log)"; \
	setsid $$server -a $(NATS_HOST) -p $(NATS_PORT) -js -sd $(RUN_DIR)/jetstream \
		-P $(RUN_DIR)/nats-server.pid >$(RUN_DIR)/nats-server.log 2>&1 </dev/null & \
	for _ in $$(seq 50); do \
		if (exec 3<>/dev/tcp/$(NATS_HOST)/$(NATS_PORT)) 2>/dev/null; then exit 0; fi; sleep 0.1; done; \
	echo "nats-server did not come up; see $(RUN_DIR)/nats-server.log" >&2; exit 1

# Stops the server `make local-nats` started; says what it did, and succeeds when there is
# nothing to stop. A zombie counts as stopped (where PID 1 is slow to reap, kill -0 still
# succeeds on one).
stop-local-nats:
	@pidfile=$(RUN_DIR)/nats-server.pid; \
	if [ ! -f $$pidfile ]; then echo "no local nats-server to stop (no $$pidfile)"; exit 0; fi; \
	pid=$$(cat $$pidfile); \
	alive() { [ -r /proc/$$1/stat ] && [ "$$(cut -d' ' -f3 /proc/$$1/stat)" != Z ]; }; \
	if alive $$pid && kill $$pid 2>/dev/null; then \
		for _ in $$(seq 50); do alive $$pid || break; sleep 0.1; done; \
		echo "stopped the local nats-server (pid $$pid)"; \
	else echo "the local nats-server (pid $$pid) had already stopped; removed its pid file"; fi; \
	rm -f $$pidfile

clean:
	$(CARGO) clean

# The package's binary is built with the size-optimised `deb` profile (Cargo.toml); cargo-deb
# strips it and packs what [package.metadata.deb] lists. The C parts (bundled SQLite, ring) get
# Debian's hardening flags; the optimisation level stays the profile's (-Os).
DEB_CFLAGS ?= -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat -Werror=format-security
deb: cargo-deb-installed
	CFLAGS="$(DEB_CFLAGS)" $(CARGO) deb --locked
	@ls -l target/debian/*.deb

cargo-deb-installed:
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb

# Lintian, the unit's exposure score, then install / upgrade / remove / purge in a throw-away
# root made by debootstrap (kept as a tarball in target/deb-test/ for the next run); see
# packaging/README.md. Needs root, lintian and debootstrap (.ci/run installs them).
DEB_TEST_BASE ?= $(CURDIR)/target/deb-test/bookworm-base.tar
deb-test: deb
	TTP_DEB_TEST_BASE=$(DEB_TEST_BASE) \
		packaging/tests/run-all.sh target/debian/$$(cd target/debian && ls -t *.deb | head -1)

# Start to subscribed and idle memory of the package's binary (a measurement, not a test).
footprint: nats-server-installed
	CFLAGS="$(DEB_CFLAGS)" $(CARGO) build --locked --profile deb
	python3 packaging/tests/footprint.py target/deb/ttp-worker

man:
	TTP_WORKER_WRITE_MANPAGE=1 $(CARGO) test --locked --test packaging_manpage
