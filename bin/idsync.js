#!/usr/bin/env node
// `npm ci && npx idsync` needs no build step: the TypeScript sources run from a bundle that
// `npm ci` builds (the `prepare` script: bin/bundle-build.mjs), that this script builds itself when
// it is missing or a source file changed since, or, when neither is possible, through tsx.
// IDSYNC_NO_BUNDLE=1 forces tsx (readable TypeScript stack traces).
//
// Why CommonJS files with every package inside, run through vm.Script with a V8 code cache:
// Node 20 has no compile cache for ES modules (module.enableCompileCache() is Node 22.1+). Loaded
// as ES modules, bullmq, ioredis, undici, pino and zod took ~250 ms to resolve, read, parse and
// compile on every start; from the bundle, V8 deserialises the code compiled by an earlier start
// instead (docs/benchmarks.md, start-up). V8 checks a cache against the source, its own version
// and flags; a rejected one only costs the compile it would have saved, and is made again.
//
// CommonJS (bin/package.json): an ES module entry costs ~6 ms more to start.
'use strict';
const { setFlagsFromString } = require('node:v8');
const { readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

const root = path.resolve(__dirname, '..');

// undici parses HTTP with llhttp compiled to WebAssembly. By default V8 also compiles that module
// with its optimising compiler on background threads, which briefly took ~35 MB of RSS right after
// the first request (peak RSS of a one-row import: 141 MB; with this flag 108 MB). The baseline
// compiler's code parses our few, small HTTP heads as fast as far as bench/run.ts can tell. The
// flag is read when a module is compiled, so setting it here, before undici loads, takes effect.
// Only where the baseline compiler is complete (x64, arm64): elsewhere V8 treats any function it
// cannot compile under this flag as a fatal error. (bin/bundle-build.mjs sets the same flags
// before it makes the code caches: V8 refuses a cache made under other flags.)
if (process.env.IDSYNC_WASM_OPTIMIZE !== '1' && (process.arch === 'x64' || process.arch === 'arm64')) setFlagsFromString('--liftoff-only');

const BUILD_DIR = path.join(root, '.idsync-build');

/**
 * The folder of the bundle built from the sources as they are now, or undefined. The build wrote
 * the size and mtime of every file it read (bin/bundle-build.mjs): one stat each, no folder walk.
 */
function currentBundle() {
  try {
    const stamp = JSON.parse(readFileSync(path.join(BUILD_DIR, 'current.json'), 'utf8'));
    if (stamp.node !== process.version) return undefined;
    for (const [rel, size, mtimeMs] of stamp.inputs) {
      const st = statSync(path.join(root, rel), { throwIfNoEntry: false });
      if (st ? st.size !== size || st.mtimeMs !== mtimeMs : size !== -1) return undefined;
    }
    return path.join(BUILD_DIR, stamp.name);
  } catch {
    return undefined;
  }
}

/** Writes a file whole or not at all: concurrent starts may write the same cache. */
function writeWhole(file, data) {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temp, data);
    renameSync(temp, file);
  } catch {
    // A read-only install runs without a cache, at the cost of compiling.
  }
}

function readOrUndefined(file) {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/**
 * The command this start runs (`idsync import …`), or undefined when it only prints help, the
 * version or a usage error: those run from cli.cjs, the program's definition alone (~0.2 MB
 * instead of ~6 MB to read and deserialise). Should a command run from it all the same (an odd
 * argument list), its stand-in runs the whole bundle (bin/bundle-build.mjs).
 */
function commandOf(argv) {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  const flags = end < 0 ? args : args.slice(0, end);
  if (flags.some((a) => a === '-h' || a === '--help' || a === '-V' || a === '--version')) return undefined;
  return /^[a-z]+$/.test(args[0] ?? '') && args[0] !== 'help' ? args[0] : undefined;
}

/**
 * Runs a bundle file's code, compiled from the first cache of `caches` that exists; returns its
 * exports and `done(exitCode)`: after a run to its end (exit 0 or 1), it writes the first cache
 * when that was missing or refused. It then holds what this start compiled, a command's own
 * functions included: ~25-40 ms less than the cache made by the build (module bodies only).
 */
function runBundle(dir, name, caches) {
  const file = path.join(dir, name);
  let used;
  let cachedData;
  for (const cache of caches) {
    cachedData = readOrUndefined(path.join(dir, cache));
    if (cachedData !== undefined) {
      used = cache;
      break;
    }
  }
  // esbuild writes ASCII only (non-ASCII characters escaped): latin1 is the cheapest exact decoding.
  const script = new vm.Script(Module.wrap(readFileSync(file, 'latin1')), { filename: file, cachedData, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
  if (name === 'main.cjs') mapStackTraces(file);
  const module = { exports: {} };
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dir);
  const refused = cachedData !== undefined && script.cachedDataRejected;
  return {
    cli: module.exports,
    done(exitCode) {
      if ((exitCode === 0 || exitCode === 1) && (used !== caches[0] || refused)) writeWhole(path.join(dir, caches[0]), script.createCachedData());
    },
  };
}

/**
 * Stack traces name the TypeScript sources, not the bundle. Node maps frames only for code it
 * loads itself (process.setSourceMapsEnabled does nothing for a vm.Script), so idsync maps the
 * stacks it prints (src/readable-stack.ts: debug logs, an unexpected error) through the function
 * registered here. Not through Error.prepareStackTrace: Node and the packages format stacks of
 * errors nobody prints (an aborted stream, a closed socket), and the first one would load the
 * map: node:module's SourceMap decodes every mapping of the bundle at once (~100 MB of heap).
 */
function mapStackTraces(file) {
  let map;
  const frame = /^(\s+at (?:.*? \()?)(.*\/main\.cjs):(\d+):(\d+)(\)?)$/;
  const original = (name, line, column) => {
    // A code cache can carry the name the bundle had when the cache was made (its build's temp folder).
    if (name !== file && !name.includes('/.idsync-build/')) return undefined;
    if (map === undefined) {
      try {
        map = new Module.SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')));
      } catch {
        map = null;
      }
    }
    const entry = map?.findEntry(line - 1, column - 1);
    if (!entry?.originalSource) return undefined;
    const source = entry.originalSource.startsWith('file://') ? new URL(entry.originalSource).pathname : path.resolve(path.dirname(file), entry.originalSource);
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  };
  globalThis[Symbol.for('idsync.sourceMappedStack')] = (stack) =>
    stack
      .split('\n')
      .map((line) => {
        const m = frame.exec(line);
        const at = m && original(m[2], Number(m[3]), Number(m[4]));
        return at ? `${m[1]}${at}${m[5] ?? ''}` : line;
      })
      .join('\n');
}

function bundled() {
  if (process.env.IDSYNC_NO_BUNDLE === '1') return undefined;
  return (async () => {
    let dir = currentBundle();
    if (!dir) {
      const { buildBundle } = await import('./bundle-build.mjs');
      dir = await buildBundle(root);
    }
    const command = commandOf(process.argv);
    return command === undefined ? runBundle(dir, 'cli.cjs', ['cli.cjs.cache']) : runBundle(dir, 'main.cjs', [`${command}.cache`, 'main.cjs.cache']);
  })().catch(() => undefined); // read-only checkout without a bundle, esbuild missing, a build error: tsx
}

async function main() {
  const loaded = await bundled();
  let cli = loaded?.cli;
  if (!cli) {
    const { register } = await import('tsx/esm/api');
    register();
    cli = await import('../src/cli/main.ts');
  }
  const exitCode = await cli.main(process.argv);
  loaded?.done(exitCode);
  process.exitCode = exitCode;
  // Everything is closed once main returns; a natural exit would still spend ~10 ms tearing the
  // heap down. Only with nothing left to write: a pipe is asynchronous on some systems (macOS).
  if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit();
}

void main();
