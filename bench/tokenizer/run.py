#!/usr/bin/env python3
"""Tokenizer micro-benchmark: throughput, start-up and memory, natively and inside Wasm.

Builds bench/tokenizer natively and for wasm32-wasip1 (+simd128, like the filter), makes three
1 MiB corpora, and runs the .wasm under V8 (Node: the engine Envoy embeds) and Wasmtime
(Cranelift, `pip install wasmtime`) when they are there. Prints one JSON object per run.

    bench/tokenizer/run.py                      # Tollgate's tokenizer, o200k_base
    bench/tokenizer/run.py --encoding cl100k
    bench/tokenizer/run.py --candidates         # also tiktoken-rs and bpe-openai, as compared in the README
    bench/tokenizer/run.py --rounds 30 FILE...  # your own corpus files

Never part of `make test`: timings are not assertions. Each number is the best of --rounds
(V8 compiles hot code with TurboFan after a few rounds; the best round is the tiered-up speed).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS_BYTES = 1 << 20


def build(feature, target=None):
    target_dir = HERE / "target" / (feature or "tollgate")
    cmd = ["cargo", "build", "--release", "--quiet", "--manifest-path", str(HERE / "Cargo.toml"), "--target-dir", str(target_dir)]
    env = dict(os.environ)
    if feature:
        cmd += ["--features", feature]
    if target:
        cmd += ["--target", target]
        env["RUSTFLAGS"] = "-C target-feature=+simd128"
    subprocess.run(cmd, check=True, env=env)
    name = "tollgate-tokenizer-bench" + (".wasm" if target else "")
    return target_dir / (target or "") / "release" / name


def corpus(files, path):
    """Concatenates `files` and repeats them up to 1 MiB (cut at a character boundary)."""
    text = "".join(Path(f).read_text(encoding="utf-8", errors="ignore") for f in files)
    data = (text * (CORPUS_BYTES // max(len(text.encode()), 1) + 1)).encode()[:CORPUS_BYTES]
    path.write_text(data.decode("utf-8", errors="ignore"), encoding="utf-8")
    return str(path)


def default_corpora(workdir):
    licenses = sorted(f for f in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(f))
    return [
        corpus(licenses or [REPO / "README.md"], workdir / "english.txt"),
        corpus(sorted(glob.glob(str(REPO / "src" / "**" / "*.rs"), recursive=True)), workdir / "code.txt"),
        # Natural text in other scripts (the test corpus's script files, not its adversarial ones).
        corpus([REPO / "tests/fixtures/tokenizer/corpus" / f"{name}.txt" for name in ("cjk", "arabic", "cyrillic", "devanagari", "emoji")], workdir / "multilingual.txt"),
    ]


def parse(output, extra):
    return [{**extra, **json.loads(line)} for line in output.splitlines() if line.startswith("{")]


def run_native(binary, args, impl):
    out = subprocess.run([str(binary), *args], check=True, capture_output=True, text=True).stdout
    return parse(out, {"engine": "native"})


def run_v8(wasm, args):
    if not shutil.which("node"):
        return [{"engine": "v8", "skipped": "node is not installed"}]
    done = subprocess.run(["node", "--no-warnings", str(HERE / "v8.mjs"), str(wasm), *args], capture_output=True, text=True)
    rows = parse(done.stdout, {"engine": "v8"})
    if done.returncode != 0:
        # Node 20 sometimes crashes while tearing down a large WASI instance, after the module
        # printed every result: keep what was printed and say so.
        if len(rows) < 2:
            raise RuntimeError(f"node failed ({done.returncode}): {done.stderr[-2000:]}")
        rows = [{**row, "node_exit": done.returncode} for row in rows]
    header = rows.pop(0) if rows and "compile_ms" in rows[0] else {}
    return [{**row, **header} for row in rows]


def run_wasmtime(wasm, args):
    try:
        import wasmtime
    except ImportError:
        return [{"engine": "wasmtime", "skipped": "pip install wasmtime"}]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(wasm))
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    # The proxy-wasm hostcalls that the tollgate library declares: never called here.
    for imp in module.imports:
        if imp.module != "wasi_snapshot_preview1" and isinstance(imp.type, wasmtime.FuncType):
            def trap(*_args, name=imp.name):
                raise RuntimeError(f"{name} is not available in the benchmark")
            linker.define(store, imp.module, imp.name, wasmtime.Func(store, imp.type, trap))
    with tempfile.NamedTemporaryFile("r") as stdout:
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["bench", *args]
        wasi.preopen_dir("/", "/")
        wasi.stdout_file = stdout.name
        store.set_wasi(wasi)
        instance = linker.instantiate(store, module)
        instance.exports(store)["_start"](store)
        return parse(Path(stdout.name).read_text(), {"engine": "wasmtime"})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoding", choices=["o200k", "cl100k"], default="o200k")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--candidates", action="store_true", help="also measure tiktoken-rs and bpe-openai")
    parser.add_argument("--no-wasm", action="store_true")
    parser.add_argument("files", nargs="*")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tokenizer-bench-") as workdir:
        files = options.files or default_corpora(Path(workdir))
        args = [options.encoding, str(options.rounds), *files]
        for feature in [None, *(["tiktoken-rs", "bpe-openai"] if options.candidates else [])]:
            impl = feature or "tollgate"
            rows = run_native(build(feature), args, impl)
            if not options.no_wasm:
                wasm = build(feature, "wasm32-wasip1")
                size = {"bench_wasm_bytes": wasm.stat().st_size}
                rows += [{**row, **size} for row in run_v8(wasm, args) + run_wasmtime(wasm, args)]
            for row in rows:
                print(json.dumps({"impl": impl, "encoding": options.encoding, **row}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
