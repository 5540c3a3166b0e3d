// Builds dist/{{name}}.wasm (`npm run build`): installs the pinned tools on first use
// (`npm ci`), generates the WIT types, type-checks with tsc, bundles src/ and the SDK into one
// module with esbuild, and makes the component with ComponentizeJS.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';

/** Runs one step; a failing step has already said why, so stop with its name only. */
function run(command, args) {
    try {
        execFileSync(command, args, { stdio: 'inherit' });
    } catch {
        console.error(`build: \`${command} ${args.join(' ')}\` failed`);
        process.exit(1);
    }
}
const bin = (tool) => `node_modules/.bin/${tool}`;

if (!existsSync(bin('componentize-js'))) {
    console.log('build: installing the pinned tools (npm ci)');
    run('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error']);
}
mkdirSync('dist', { recursive: true });
// jco reads the WIT through a WASI filesystem that starts with nothing open: the preload
// opens it (see sdk/typescript/tools/jco-preopens.mjs).
run('node', [
    '--import', './sdk/typescript/tools/jco-preopens.mjs',
    'node_modules/@bytecodealliance/jco/dist/jco.js',
    'guest-types', 'wit', '--world-name', 'partner', '--out-dir', 'build/wit-types', '--quiet',
]);
run(bin('tsc'), ['-p', 'tsconfig.json']);
run(bin('esbuild'), [
    'src/index.ts', '--bundle', '--format=esm', '--platform=neutral', '--target=es2022',
    '--alias:@sagahost/partner=./sdk/typescript/src/index.ts', '--external:sagahost:*',
    '--outfile=build/{{name}}.js', '--log-level=warning',
]);
// The host grants WASI clocks, random and stdio, not HTTP: the component has no fetch().
run(bin('componentize-js'), [
    'build/{{name}}.js', '--wit', 'wit', '--world-name', 'partner',
    '--disable', 'http', 'fetch-event', '--out', 'build/{{name}}.wasm',
]);
renameSync('build/{{name}}.wasm', 'dist/{{name}}.wasm');
console.log('build: dist/{{name}}.wasm');
