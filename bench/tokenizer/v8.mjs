// Runs a wasm32-wasip1 command under V8 (Node's node:wasi), the engine Envoy embeds.
// usage: node v8.mjs MODULE.wasm ARGS...   Prints compile and instantiate times, then the module's output.
// Imports outside WASI (the proxy-wasm hostcalls the tollgate library declares) get stubs that
// trap: the benchmark never calls them.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [path, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: ['bench', ...args], env: {}, preopens: { '/': '/' }, returnOnExit: true });
const t0 = performance.now();
const module = await WebAssembly.compile(readFileSync(path));
const t1 = performance.now();
const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== 'function' || from === 'wasi_snapshot_preview1') continue;
  imports[from] ??= {};
  imports[from][name] = () => { throw new Error(`${from}.${name} is not available in the benchmark`); };
}
const instance = await WebAssembly.instantiate(module, imports);
const t2 = performance.now();
console.log(JSON.stringify({ engine: 'v8', compile_ms: +(t1 - t0).toFixed(1), instantiate_ms: +(t2 - t1).toFixed(1) }));
// The library exports `_initialize` for the proxies; a WASI command must only export `_start`.
const { _start, memory } = instance.exports;
process.exitCode = wasi.start({ exports: { _start, memory } });
