#!/usr/bin/env bash
# Guardrail throughput: native, and the same code compiled to wasm32-wasip1 (+simd128, release,
# LTO) under V8 (Node's WASI; Envoy embeds V8) and under Cranelift (the wasmtime PyPI package).
# Workloads: English prose (the Debian license texts), this repository's Rust sources, text dense
# with personal data, a 1 MB chat request, and a stream of 16-byte deltas.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
cat /usr/share/common-licenses/* > "$out/english.txt"
# The code corpus is this repository's Rust sources as of a fixed commit, so that the row means the
# same text from run to run (today's src/ keeps growing, and denser in candidates).
CODE_REV=055e91f
if git cat-file -e "$CODE_REV^{commit}" 2>/dev/null; then
  git ls-tree -r --name-only "$CODE_REV" src | grep '\.rs$' | while read -r file; do git show "$CODE_REV:$file"; done \
    > "$out/code.txt"
else
  echo "guardrails-bench: commit $CODE_REV not here (no git history?): the code row reads today's src/" >&2
  cat $(find src -name '*.rs' | sort) > "$out/code.txt"
fi

cargo build --release --quiet --example guardrails_bench
RUSTFLAGS="-C target-feature=+simd128" cargo build --release --quiet --example guardrails_bench --target wasm32-wasip1
wasm=target/wasm32-wasip1/release/examples/guardrails_bench.wasm

echo "== native ($(uname -m))"
target/release/examples/guardrails_bench "$out/english.txt" "$out/code.txt"
echo "== wasm, V8 (node $(node --version))"
node --no-warnings bench/wasi-node.mjs "$wasm" "$out" /data/english.txt /data/code.txt
python=.venv/bin/python
[ -x "$python" ] || python=python3
if ! "$python" -c 'import wasmtime' 2>/dev/null; then
  "$python" -m pip install --quiet wasmtime
fi
echo "== wasm, Cranelift (wasmtime $("$python" -c 'import importlib.metadata as m; print(m.version("wasmtime"))'))"
"$python" bench/wasi-wasmtime.py "$wasm" "$out" /data/english.txt /data/code.txt
