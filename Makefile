# spanrelay: the two quick-start commands are `make run` and `make test`.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CONFIG ?=

.PHONY: all deps interop-deps browser-deps configure build release-check run test test-asan clean

all: build

deps:
	@bash deploy/install-deps.sh

# The interop suite's pinned OpenTelemetry JS SDK (package-lock.json); re-installed when the
# lockfile changes.
interop-deps: deps
	@cd tests/interop && if [ ! -f node_modules/.package-lock.json ] || \
	    [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    npm ci --no-audit --no-fund --loglevel=error; fi

# The browser test's pinned playwright-core (no browser download: it drives Debian's chromium).
browser-deps: deps
	@cd tests/browser && if [ ! -f node_modules/.package-lock.json ] || \
	    [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    npm ci --no-audit --no-fund --loglevel=error; fi

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSPANRELAY_WERROR=ON >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Runs the agent on the embedded default config (or CONFIG=path/to.yaml). Builds only the agent.
run: configure
	@cmake --build $(BUILD) -j $(JOBS) --target spanrelay
	@echo "spanrelay: OTLP/HTTP on http://127.0.0.1:4318/v1/traces, spans appended to ./spans.jsonl"
	@echo "           metrics on http://127.0.0.1:13133/metrics; Ctrl-C to stop"
	@./$(BUILD)/spanrelay $(if $(CONFIG),--config $(CONFIG),)

test: build release-check interop-deps browser-deps fuzz-check
	@cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# The build users and the image make (Release, -O3) must be warning-free too: built here with
# warnings as errors, in its own tree (the agent only; `make test` builds everything at -O2).
release-check: deps
	@cmake -S . -B $(BUILD)-release-check -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
	    -DSPANRELAY_WERROR=ON >/dev/null
	@cmake --build $(BUILD)-release-check -j $(JOBS) --target spanrelay

# libFuzzer harnesses (tests/fuzz/README.md): clang-14, ASan + UBSan, in their own tree (only
# the libraries they use are built). `make fuzz` fuzzes each for FUZZ_SECONDS on a temporary
# copy of its corpus; `make test` runs each over its checked-in corpus plus FUZZ_CHECK_SECONDS.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 4
.PHONY: fuzz-build fuzz fuzz-check
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DBUILD_TESTING=OFF -DSPANRELAY_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BUILD)/tests/fuzz
fuzz-check: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_CHECK_SECONDS) $(FUZZ_BUILD)/tests/fuzz

# Every test (unit, integration, interop) against an AddressSanitizer + UBSan build, in its own tree.
test-asan: interop-deps browser-deps
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DSPANRELAY_SANITIZE=address,undefined -DSPANRELAY_WERROR=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	@cd $(BUILD)-asan && ctest --output-on-failure -j 2 --timeout 900

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-release $(BUILD)-release-check $(FUZZ_BUILD)

# Performance benchmark against the budget (docs/performance.md); never part of `make test`.
.PHONY: bench
bench:
	@bash tests/bench/run.sh

# Installs the agent on this host: a Release build of its own (no warnings-as-errors: a user's
# build must not fail on a new compiler's warning), then the binary to $(PREFIX)/bin, the systemd
# unit (ExecStart= pointing at that binary) to $(PREFIX)/lib/systemd/system (systemd's own
# directory for PREFIX=/usr), config/examples/systemd.yaml to /etc/spanrelay/spanrelay.yaml
# unless one exists, and the docs to $(PREFIX)/share/doc/spanrelay. DESTDIR stages it elsewhere.
# Then: deploy/systemd/spanrelay.service's header (token, systemctl enable --now spanrelay).
PREFIX ?= /usr/local
DESTDIR ?=
.PHONY: install
install: deps
	@cmake -S . -B $(BUILD)-release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD)-release -j $(JOBS) --target spanrelay
	@DESTDIR='$(DESTDIR)' cmake --install $(BUILD)-release --prefix '$(PREFIX)' --strip

# The sidecar container image (deploy/container/Dockerfile) where no Docker engine exists:
# buildah (vfs storage, chroot isolation) on a debian:12 base made by debootstrap, then
# deploy/container/smoke-test.sh on the result. Needs root; never part of `make test`.
.PHONY: image
image:
	@bash deploy/container/build-image.sh
