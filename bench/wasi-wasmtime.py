"""Runs a WASI command module under wasmtime (Cranelift): wasi-wasmtime.py MODULE DIR ARGS...

DIR is preopened as /data. The library's proxy-wasm hostcall imports are never called by the
benchmark; they are defined as traps.
"""
import sys

import wasmtime

module_path, data_dir, *args = sys.argv[1:]
engine = wasmtime.Engine()
module = wasmtime.Module.from_file(engine, module_path)
linker = wasmtime.Linker(engine)
linker.define_wasi()
linker.define_unknown_imports_as_traps(module)
wasi = wasmtime.WasiConfig()
wasi.argv = ["bench", *args]
wasi.preopen_dir(data_dir, "/data")
wasi.inherit_stdout()
wasi.inherit_stderr()
store = wasmtime.Store(engine)
store.set_wasi(wasi)
instance = linker.instantiate(store, module)
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    sys.exit(e.code)
