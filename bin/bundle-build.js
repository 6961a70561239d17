// Builds the CLI bundle that bin/idsync.js runs: .idsync-build/cli-<id>/main.cjs, one CommonJS
// file holding idsync's sources and every package they import (esbuild, tsx's dependency), and
// .idsync-build/current.json, which names it and lists the size and mtime of every file the build
// read, so that a start checks with one stat per file whether the sources changed since.
//
//   node bin/bundle-build.js     what `npm ci` runs (the `prepare` script); then the first start
//                                makes the V8 code cache, here too, so that no user start pays it
//
// Run by bin/idsync.js itself when the bundle is missing or out of date.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * What changes the bundle without being a source file esbuild reads from the checkout: the
 * package set (npm rewrites node_modules/.package-lock.json on every install; the packages' own
 * files are not stat'ed one by one), the package and compiler settings.
 */
const ALSO = ['package.json', 'tsconfig.json', 'node_modules/.package-lock.json', 'bin/bundle-build.js'];

/** [path relative to root, size, mtimeMs] of a file, size -1 when it does not exist. */
function stampOf(root, rel) {
  const st = statSync(path.join(root, rel), { throwIfNoEntry: false });
  return st ? [rel, st.size, st.mtimeMs] : [rel, -1, -1];
}

/** Every file under the source folders, stat'ed BEFORE the build: a file changed during the build then shows as changed. */
function statSources(root) {
  const out = new Map();
  const walk = (rel) => {
    for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else out.set(child, stampOf(root, child));
    }
  };
  for (const dir of ['src', 'jobs']) walk(dir);
  return out;
}

/**
 * Packages whose loading is put off until one of their exports is first read: what a command
 * needs only on some paths. Their module is replaced by one that defines a getter per export name
 * (read at build time), which loads the package when first read. esbuild's interop reads named
 * imports at each use, never at load, so an unused package is never loaded. Measured (bench/run.ts
 * start-up): mime-types builds its tables on load (~10 ms; read only when a file's type is not
 * given), cron-parser loads luxon (~5 ms; job schedulers only).
 */
const LAZY_PACKAGES = ['mime-types', 'cron-parser'];

/**
 * idsync sends its requests through undici's Pool and request API alone; undici's index also loads
 * fetch, WebSocket, cookies, caches and mocks (~30 ms, and node:http, node:zlib and Node's own
 * undici with them). Imports of `undici` from idsync's sources get the Pool and the API directly,
 * any other export through a getter that loads the whole package, as above.
 */
const UNDICI_LEAN = { Dispatcher: 'lib/dispatcher/dispatcher.js', Pool: 'lib/dispatcher/pool.js', Client: 'lib/dispatcher/client.js', Agent: 'lib/dispatcher/agent.js', errors: 'lib/core/errors.js' };

function lazyModule(entry, names, direct = {}) {
  const lines = [`let full;`, `const load = () => (full ??= require(${JSON.stringify(entry)}));`];
  for (const [name, file] of Object.entries(direct)) lines.push(`exports[${JSON.stringify(name)}] = require(${JSON.stringify(file)});`);
  for (const name of names) {
    if (name in direct || name === '__esModule') continue;
    lines.push(`Object.defineProperty(exports, ${JSON.stringify(name)}, { enumerable: true, get: () => load()[${JSON.stringify(name)}] });`);
  }
  return lines.join('\n');
}

function lazyPackagesPlugin(root) {
  return {
    name: 'idsync-lazy-packages',
    setup(b) {
      const names = new Map();
      const exportNames = (entry) => {
        if (!names.has(entry)) names.set(entry, Object.keys(createRequire(entry)(entry)));
        return names.get(entry);
      };
      b.onResolve({ filter: /^(undici|mime-types|cron-parser)$/ }, (args) => {
        if (args.namespace === 'idsync-lazy') return undefined;
        if (args.path === 'undici' && args.importer.split(path.sep).includes('node_modules')) return undefined;
        const entry = createRequire(path.join(args.resolveDir, 'x.js')).resolve(args.path);
        return { path: entry, namespace: 'idsync-lazy', pluginData: { name: args.path } };
      });
      b.onLoad({ filter: /.*/, namespace: 'idsync-lazy' }, (args) => {
        const dir = path.dirname(args.path);
        const direct = args.pluginData.name === 'undici' ? Object.fromEntries(Object.entries(UNDICI_LEAN).map(([k, f]) => [k, path.join(dir, f)])) : {};
        let contents = lazyModule(args.path, exportNames(args.path), direct);
        if (args.pluginData.name === 'undici') contents = `Object.assign(require(${JSON.stringify(direct.Dispatcher)}).prototype, require(${JSON.stringify(path.join(dir, 'lib/api/index.js'))}));\n${contents}`;
        return { contents, loader: 'js', resolveDir: dir };
      });
    },
  };
}

/** Builds the bundle of the sources under `root`; returns its folder. */
export async function buildBundle(root) {
  const { build } = await import('esbuild');
  const buildDir = path.join(root, '.idsync-build');
  mkdirSync(buildDir, { recursive: true });
  const before = statSources(root);
  const temp = path.join(buildDir, `.build-${process.pid}-${Date.now()}.tmp`);
  try {
    const result = await build({
      absWorkingDir: root,
      entryPoints: [path.join(root, 'src/cli/main.ts')],
      outfile: path.join(temp, 'main.cjs'),
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: `node${process.versions.node.split('.')[0]}`,
      // The one ESM-only construct the sources use (src/package-root.ts); __dirname is the bundle's folder.
      define: { 'import.meta.dirname': '__dirname' },
      // bin/idsync.js decodes the bundle as latin1: esbuild's default ASCII output keeps that exact.
      charset: 'ascii',
      sourcemap: 'external',
      metafile: true,
      logLevel: 'silent',
      plugins: [lazyPackagesPlugin(root)],
    });
    const inputs = Object.keys(result.metafile.inputs)
      .filter((f) => !f.includes(':') && !f.split('/').includes('node_modules'))
      .sort()
      .map((f) => before.get(f) ?? stampOf(root, f));
    for (const rel of ALSO) inputs.push(stampOf(root, rel));
    const stamp = { node: process.version, inputs };
    const name = `cli-${createHash('sha256').update(JSON.stringify(stamp)).digest('hex').slice(0, 16)}`;
    const dir = path.join(buildDir, name);
    try {
      renameSync(temp, dir);
    } catch {
      // A concurrent start built the same sources first: keep its folder.
      rmSync(temp, { recursive: true, force: true });
    }
    const pointer = path.join(buildDir, 'current.json');
    writeFileSync(`${pointer}.${process.pid}.tmp`, `${JSON.stringify({ name, ...stamp })}\n`);
    renameSync(`${pointer}.${process.pid}.tmp`, pointer);
    for (const old of readdirSync(buildDir)) if (old.startsWith('cli-') && old !== name) rmSync(path.join(buildDir, old), { recursive: true, force: true });
    return dir;
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // `npm ci`: a failed build must not fail the install (the CLI then builds or falls back to tsx).
  const root = path.resolve(import.meta.dirname, '..');
  const t0 = performance.now();
  try {
    const dir = await buildBundle(root);
    // One start makes the code cache (bin/idsync.js loads every command's modules for it).
    spawnSync(process.execPath, [path.join(root, 'bin/idsync.js'), '--version'], { stdio: 'ignore' });
    process.stdout.write(`idsync: CLI bundle built in ${path.relative(root, dir)} (${Math.round(performance.now() - t0)} ms)\n`);
  } catch (err) {
    process.stderr.write(`idsync: the CLI bundle could not be built (${err?.message ?? err}); bin/idsync.js will try again on its first start, or run the sources through tsx\n`);
  }
}
