// Runs a WASI command module under V8 (Node): node wasi-node.mjs MODULE DIR ARGS... (DIR is /data).
// The proxy-wasm hostcall imports of the library are never called by the benchmark: stubbed.
// Node refuses modules that export _initialize (the proxy-wasm SDK does): only _start is passed.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';
const [wasmPath, dir, ...rest] = argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: ['bench', ...rest], preopens: { '/data': dir } });
const module = await WebAssembly.compile(await readFile(wasmPath));
// The library's proxy-wasm host layer imports hostcalls the bench never calls: stub them.
const env = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === 'env' && imp.kind === 'function') env[imp.name] = () => { throw new Error('hostcall ' + imp.name); };
}
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
