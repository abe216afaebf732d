# spanrelay: the two quick-start commands are `make run` and `make test`.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CONFIG ?=

.PHONY: all deps interop-deps configure build run test test-asan clean

all: build

deps:
	@bash deploy/install-deps.sh

# The interop suite's pinned OpenTelemetry JS SDK (package-lock.json); re-installed when the
# lockfile changes.
interop-deps: deps
	@cd tests/interop && if [ ! -f node_modules/.package-lock.json ] || \
	    [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    npm ci --no-audit --no-fund --loglevel=error; fi

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Runs the agent on the embedded default config (or CONFIG=path/to.yaml). Builds only the agent.
run: configure
	@cmake --build $(BUILD) -j $(JOBS) --target spanrelay
	@echo "spanrelay: OTLP/HTTP on http://127.0.0.1:4318/v1/traces, spans appended to ./spans.jsonl"
	@echo "           metrics on http://127.0.0.1:13133/metrics; Ctrl-C to stop"
	@./$(BUILD)/spanrelay $(if $(CONFIG),--config $(CONFIG),)

test: build interop-deps
	@cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# Every test (unit, integration, interop) against an AddressSanitizer + UBSan build, in its own tree.
test-asan: deps
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DSPANRELAY_SANITIZE=address,undefined >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	@cd $(BUILD)-asan && ctest --output-on-failure -j 2 --timeout 900

clean:
	rm -rf $(BUILD) $(BUILD)-asan

# Performance benchmark against the budget (docs/performance.md); never part of `make test`.
.PHONY: bench
bench:
	@bash tests/bench/run.sh
