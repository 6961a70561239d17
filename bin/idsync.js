#!/usr/bin/env node
// `npm ci && npx idsync` needs no build step: the TypeScript sources run from a bundle that
// `npm ci` builds (the `prepare` script runs `node bin/bundle-build.js`), that this script builds
// itself when it is missing or a source file changed since, or, when neither is possible,
// directly through tsx. IDSYNC_NO_BUNDLE=1 forces tsx (readable TypeScript stack traces).
//
// Why one CommonJS file with every package inside, run through vm.Script with a V8 code cache:
// Node 20 has no compile cache for ES modules (module.enableCompileCache() is Node 22.1+). Loaded
// as ES modules, bullmq, ioredis, undici, pino and zod took ~250 ms to resolve, read, parse and
// compile on every start; from the bundle with its code cache, V8 deserialises the compiled code
// instead (bench/run.ts, section start-up, and docs/benchmarks.md). The cache is a file beside the
// bundle: made once per bundle, V8 checks it against the source and its own version and flags,
// and a rejected cache only costs the compile it would have saved (then it is made again).
import { setFlagsFromString } from 'node:v8';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const root = path.resolve(import.meta.dirname, '..');

// undici parses HTTP with llhttp compiled to WebAssembly. By default V8 also compiles that module
// with its optimising compiler on background threads, which briefly took ~35 MB of RSS right after
// the first request (peak RSS of a one-row import: 141 MB; with this flag 108 MB). The baseline
// compiler's code parses our few, small HTTP heads as fast as far as bench/run.ts can tell. The
// flag is read when a module is compiled, so setting it here, before undici loads, takes effect.
// Only where the baseline compiler is complete (x64, arm64): elsewhere V8 treats any function it
// cannot compile under this flag as a fatal error.
if (process.env.IDSYNC_WASM_OPTIMIZE !== '1' && (process.arch === 'x64' || process.arch === 'arm64')) setFlagsFromString('--liftoff-only');

const BUILD_DIR = path.join(root, '.idsync-build');

/**
 * The folder of the bundle built from the sources as they are now, or undefined. The build wrote
 * the size and mtime of every file it read (bin/bundle-build.js): one stat each, no folder walk.
 */
function currentBundle() {
  try {
    const stamp = JSON.parse(readFileSync(path.join(BUILD_DIR, 'current.json'), 'utf8'));
    if (stamp.node !== process.version) return undefined;
    for (const [rel, size, mtimeMs] of stamp.inputs) {
      const st = statSync(path.join(root, rel), { throwIfNoEntry: false });
      if (!st || st.size !== size || st.mtimeMs !== mtimeMs) return undefined;
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
 * The command this start runs, when it is one (`idsync import …`, not `idsync import --help`):
 * its code cache, made after its first successful run, also holds the functions compiled while it
 * ran (~25-40 ms less than the cache made after the build, which holds module bodies only).
 */
function commandOf(argv) {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  const flags = end < 0 ? args : args.slice(0, end);
  if (flags.some((a) => a === '-h' || a === '--help' || a === '-V' || a === '--version')) return undefined;
  return /^[a-z]+$/.test(args[0] ?? '') ? args[0] : undefined;
}

/**
 * Runs the bundle's code, compiled from a code cache when there is one, and returns its exports
 * and what to do once the command returns. Caches, beside the bundle: main.cjs.cache (made after
 * the build, every command's modules loaded), <command>.cache and cli.cache (help, version).
 */
function loadBundle(dir) {
  const file = path.join(dir, 'main.cjs');
  const command = commandOf(process.argv);
  const ownCache = path.join(dir, `${command ?? 'cli'}.cache`);
  const warmCache = path.join(dir, 'main.cjs.cache');
  let cacheFile = ownCache;
  let cachedData = readOrUndefined(ownCache);
  if (cachedData === undefined) {
    cacheFile = warmCache;
    cachedData = readOrUndefined(warmCache);
  }
  // esbuild writes ASCII only (non-ASCII characters escaped): latin1 is the cheapest exact decoding.
  const source = readFileSync(file, 'latin1');
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
  const module = { exports: {} };
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dir);
  const cli = module.exports;
  const rejected = cachedData !== undefined && script.cachedDataRejected;
  // Which command's modules this start loaded (none for --help): the cache to write is named after it.
  let ran;
  const loaders = Object.values(cli.COMMAND_MODULES);
  for (const [name, load] of Object.entries(cli.COMMAND_MODULES)) {
    cli.COMMAND_MODULES[name] = () => {
      ran = name;
      return load();
    };
  }
  return {
    cli,
    /**
     * The first start of a bundle (or one whose cache V8 rejected) makes the caches others start
     * from: cli.cache (the program's definition and help only: what --help needs), then
     * main.cjs.cache with every command's modules loaded.
     */
    async warm() {
      if (cachedData !== undefined && !rejected) return;
      cli.buildProgram(() => undefined).helpInformation();
      writeWhole(path.join(dir, 'cli.cache'), script.createCachedData());
      await Promise.all(loaders.map((load) => load()));
      writeWhole(warmCache, script.createCachedData());
    },
    /** After a successful run of a command: its own cache, once (again when V8 rejected it). */
    done(exitCode) {
      if (exitCode !== 0 || command === undefined || ran !== command) return;
      if (cacheFile !== ownCache || rejected) writeWhole(ownCache, script.createCachedData());
    },
  };
}

async function bundled() {
  if (process.env.IDSYNC_NO_BUNDLE === '1') return undefined;
  try {
    let dir = currentBundle();
    if (!dir) {
      const { buildBundle } = await import('./bundle-build.js');
      dir = await buildBundle(root);
    }
    const loaded = loadBundle(dir);
    await loaded.warm();
    return loaded;
  } catch {
    // Read-only checkout without a bundle, esbuild missing, a build error: the sources still run through tsx.
    return undefined;
  }
}

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
