// Runs examples/per_request.rs, compiled to wasm32-wasip1, under V8 (Node's node:wasi): the
// engine family Envoy embeds, though Node's V8 is older than Envoy's. Prints the module's JSON.
//
// usage: node wasm_micro_v8.mjs PER_REQUEST.wasm BODY_DIR BODY.json...
//
// The module links the filter's library, so it also imports the proxy-wasm hostcalls and
// exports `_initialize`; the per-request code calls none of them. Hostcalls get trapping stubs,
// and WASI is started with `_start` and `memory` only, as a command expects.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { WASI } from 'node:wasi';

const [wasmPath, bodyDir, ...bodies] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: ['per_request', 'time', ...bodies.map((b) => `/bodies/${basename(b)}`)],
  env: { BENCH_BUDGET_MS: process.env.BENCH_BUDGET_MS ?? '300' },
  preopens: { '/bodies': bodyDir },
  returnOnExit: true,
});
const module = await WebAssembly.compile(readFileSync(wasmPath));
const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== 'function' || from === 'wasi_snapshot_preview1') continue;
  imports[from] ??= {};
  imports[from][name] = () => {
    throw new Error(`${from}.${name}: a proxy-wasm hostcall was called outside a proxy`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
const { _start, memory } = instance.exports;
process.exitCode = wasi.start({ exports: { _start, memory } });
