#!/usr/bin/env node
// `npm ci && npx idsync` needs no build step: the TypeScript sources run either from a bundle that
// this script builds itself with esbuild (tsx's dependency) the first time and whenever a source
// file changes, or, when that is not possible, directly through tsx.
//
// Why a bundle: tsx compiles every module in a loader thread with its own V8 heap and turns on
// source-mapped stack traces. Measured by bench/run.ts, a one-row import peaked at 166 MB RSS
// through tsx and 130 MB from the bundle, and uploads ran ~25 % faster. IDSYNC_NO_BUNDLE=1
// forces tsx (readable TypeScript stack traces while debugging).
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { mkdirSync, readdirSync, renameSync, statSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');

// undici parses HTTP with llhttp compiled to WebAssembly. By default V8 also compiles that module
// with its optimising compiler on background threads, which briefly took ~35 MB of RSS right after
// the first request (peak RSS of a one-row import: 141 MB; with this flag 108 MB). The baseline
// compiler's code parses our few, small HTTP heads as fast as far as bench/run.ts can tell. The
// flag is read when a module is compiled, so setting it here, before undici loads, takes effect.
// Only where the baseline compiler is complete (x64, arm64): elsewhere V8 treats any function it
// cannot compile under this flag as a fatal error.
if (process.env.IDSYNC_WASM_OPTIMIZE !== '1' && (process.arch === 'x64' || process.arch === 'arm64')) setFlagsFromString('--liftoff-only');

/** A fingerprint of every source file (path, size, mtime): ~100 stat calls, about a millisecond. */
function sourceFingerprint() {
  // The build options are part of the bundle: a change of them (source maps) builds it anew.
  const hash = createHash('sha256').update(process.version).update('sourcemap:linked\n');
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(ts|js|json)$/.test(entry.name)) {
        const st = statSync(full);
        hash.update(`${full}\0${st.size}\0${st.mtimeMs}\n`);
      }
    }
  };
  for (const dir of ['src', 'jobs']) walk(path.join(root, dir));
  const pkg = statSync(path.join(root, 'package.json'));
  hash.update(`package.json\0${pkg.size}\0${pkg.mtimeMs}`);
  return hash.digest('hex').slice(0, 16);
}

async function bundled() {
  if (process.env.IDSYNC_NO_BUNDLE === '1') return undefined;
  try {
    const dir = path.join(root, '.idsync-build');
    const name = `cli-${sourceFingerprint()}`;
    const out = path.join(dir, name);
    const file = path.join(out, 'main.mjs');
    if (!existsSync(file)) {
      const { build } = await import('esbuild');
      mkdirSync(dir, { recursive: true });
      const temp = path.join(dir, `.${name}.${process.pid}.tmp`);
      // Code splitting: each command's modules (and the packages they import) load only when
      // that command runs, so `idsync import` never loads the sandbox, watcher or archive code.
      await build({
        entryPoints: { main: path.join(root, 'src/cli/main.ts') },
        bundle: true,
        splitting: true,
        platform: 'node',
        format: 'esm',
        target: `node${process.versions.node.split('.')[0]}`,
        packages: 'external',
        outdir: temp,
        outExtension: { '.js': '.mjs' },
        chunkNames: 'chunk-[hash]',
        // Linked (a sourceMappingURL comment in each chunk): with source maps enabled below, a stack
        // trace (debug logs, an unexpected error) names src/**/*.ts lines, not chunk-*.mjs ones.
        sourcemap: 'linked',
        logLevel: 'silent',
      });
      // Concurrent first runs each build their own temp folder; the first rename wins whole,
      // the others find the folder there and drop theirs.
      try {
        renameSync(temp, out);
      } catch {
        rmSync(temp, { recursive: true, force: true });
      }
      for (const old of readdirSync(dir)) if (old.startsWith('cli-') && old !== name) rmSync(path.join(dir, old), { recursive: true, force: true });
    }
    // Before the bundle loads: Node reads a module's source map as it loads the module (~1 MB of
    // maps in all; peak RSS of `idsync demo` 124-129 MB with, 124-126 MB without). Frames are
    // mapped when a stack is formatted: debug logs, unexpected errors, BullMQ's failed attempts.
    process.setSourceMapsEnabled(true);
    return await import(pathToFileURL(file).href);
  } catch {
    // Read-only checkout, esbuild missing, a build error: the sources still run through tsx.
    return undefined;
  }
}

let cli = await bundled();
if (!cli) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../src/cli/main.ts');
}
process.exitCode = await cli.main(process.argv);
