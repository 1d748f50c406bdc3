"""Runs examples/per_request.rs, compiled to wasm32-wasip1, under Wasmtime (Cranelift) and
prints its JSON. Run with .bench-venv/bin/python (the `wasmtime` package lives there).

usage: wasm_micro.py PER_REQUEST.wasm BODY_DIR BODY.json...

The module links the filter's library, so it also imports the proxy-wasm hostcalls; the
per-request code never calls them, and they are defined here as functions that trap.
"""

import sys
import tempfile
from pathlib import Path

import wasmtime


def main() -> int:
    wasm, body_dir, *bodies = sys.argv[1:]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, wasm)
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()

    def trap(*_args):
        raise wasmtime.Trap("a proxy-wasm hostcall was called outside a proxy")

    for item in module.imports:
        if item.module == "env" and isinstance(item.type, wasmtime.FuncType):
            linker.define(store, "env", item.name, wasmtime.Func(store, item.type, trap))

    with tempfile.TemporaryDirectory() as tmp:
        stdout = Path(tmp) / "stdout"
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["per_request", "time", *(f"/bodies/{Path(b).name}" for b in bodies)]
        wasi.preopen_dir(body_dir, "/bodies")
        wasi.stdout_file = str(stdout)
        wasi.inherit_stderr()
        wasi.env = [[k, v] for k, v in (("BENCH_BUDGET_MS", __import__("os").environ.get("BENCH_BUDGET_MS", "300")),)]
        store.set_wasi(wasi)
        instance = linker.instantiate(store, module)
        try:
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exit_trap:
            if exit_trap.code != 0:
                raise
        sys.stdout.write(stdout.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
