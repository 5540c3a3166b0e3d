// Preloaded (`node --import`) into `jco guest-types` by the build script.
//
// jco 1.35.0 parses WIT with a WebAssembly component that runs on
// @bytecodealliance/preview2-shim 0.26, whose filesystem starts with no
// preopened directory, so every `jco types` / `jco guest-types` call fails with
// "failed to read path for WIT". This preopens `/` in the very preview2-shim
// instance jco uses (resolved from jco's own location, so it is the same module)
// before jco runs. Drop it once jco preopens the WIT path itself.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const jcoEntry = process.argv[1];
if (!jcoEntry) {
    throw new Error('jco-preopens.mjs must be preloaded into the jco CLI: node --import jco-preopens.mjs JCO ...');
}
const transpile = createRequire(jcoEntry).resolve('@bytecodealliance/jco-transpile');
const shim = createRequire(transpile).resolve('@bytecodealliance/preview2-shim/filesystem');
const { _setPreopens } = await import(pathToFileURL(shim).href);
_setPreopens({ '/': '/' });
