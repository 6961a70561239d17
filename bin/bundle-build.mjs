// Builds what bin/idsync.js runs, in .idsync-build/cli-<id>/:
//   main.cjs        idsync's sources and every package they import, one CommonJS file (esbuild,
//                   tsx's dependency), and main.cjs.cache, its V8 code cache with every command's
//                   modules loaded;
//   cli.cjs         the program's definition alone (help, version, usage errors), each command's
//                   module a stand-in that runs main.cjs, and cli.cjs.cache;
// and .idsync-build/current.json, which names the folder and lists the size and mtime of every
// file the build read, so that a start checks with one stat per file whether anything changed.
//
//   node bin/bundle-build.mjs     what `npm ci` runs (the `prepare` script)
//
// bin/idsync.js runs buildBundle() itself when the bundle is missing or out of date (without the
// caches: that start writes the cache of what it ran).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import vm from 'node:vm';

/**
 * What changes the bundle without being a source file esbuild reads from the checkout: the
 * package set (npm rewrites node_modules/.package-lock.json on every install; the packages' own
 * files are not stat'ed one by one), the package and compiler settings, this script.
 */
const ALSO = ['package.json', 'tsconfig.json', 'node_modules/.package-lock.json', 'bin/bundle-build.mjs'];

/**
 * Packages whose loading is put off until one of their exports is first read: what a command
 * needs only on some paths. Their module is replaced by one that defines a getter per export name
 * (read at build time), which loads the package when first read. esbuild's interop reads named
 * imports at each use, never at load, so an unused package is never loaded. Measured with the
 * bundle's module timings: mime-types builds its tables on load (~8 ms; needed only when a file's
 * content does not say its type), cron-parser loads luxon (~5 ms; job schedulers only).
 */
const LAZY_PACKAGES = ['mime-types', 'cron-parser'];

/**
 * idsync sends its requests through undici's Pool and request API alone; undici's index also loads
 * fetch, WebSocket, cookies, caches and mocks (~30 ms, and Node's http, zlib and own undici with
 * them). Imports of `undici` from idsync's sources get these directly, any other export through a
 * getter that loads the whole package, as above.
 */
const UNDICI_LEAN = { Dispatcher: 'lib/dispatcher/dispatcher.js', Pool: 'lib/dispatcher/pool.js', Client: 'lib/dispatcher/client.js', Agent: 'lib/dispatcher/agent.js', errors: 'lib/core/errors.js' };

/** msgpackr (BullMQ) probes for this optional native add-on, never built here (package.json allowScripts): ~1.5 ms of file probing. */
const ABSENT = ['msgpackr-extract'];

/** The command modules src/cli/main.ts loads lazily: in cli.cjs, stand-ins. */
const COMMAND_MODULE = /^\.\/[a-z]+\.ts$/;

function lazyModule(entry, names, direct) {
  const lines = ['let full;', `const load = () => (full ??= require(${JSON.stringify(entry)}));`];
  for (const [name, file] of Object.entries(direct)) lines.push(`exports[${JSON.stringify(name)}] = require(${JSON.stringify(file)});`);
  for (const name of names) {
    if (name in direct || name === '__esModule') continue;
    lines.push(`Object.defineProperty(exports, ${JSON.stringify(name)}, { enumerable: true, get: () => load()[${JSON.stringify(name)}] });`);
  }
  return lines.join('\n');
}

function packagesPlugin() {
  const lazy = new RegExp(`^(undici|${LAZY_PACKAGES.map((p) => p.replace(/[-/]/g, '\\$&')).join('|')})$`);
  const absent = new RegExp(`^(${ABSENT.join('|')})$`);
  return {
    name: 'idsync-packages',
    setup(b) {
      const names = new Map();
      const exportNames = (entry) => {
        if (!names.has(entry)) names.set(entry, Object.keys(createRequire(entry)(entry)));
        return names.get(entry);
      };
      b.onResolve({ filter: absent }, (args) => ({ path: args.path, namespace: 'idsync-absent' }));
      b.onLoad({ filter: /.*/, namespace: 'idsync-absent' }, (args) => ({ contents: `throw Object.assign(new Error('${args.path} is not part of the idsync bundle'), { code: 'MODULE_NOT_FOUND' });`, loader: 'js' }));
      b.onResolve({ filter: lazy }, (args) => {
        if (args.namespace === 'idsync-lazy') return undefined;
        if (args.path === 'undici' && args.importer.split(path.sep).includes('node_modules')) return undefined;
        const entry = createRequire(path.join(args.resolveDir, 'x.js')).resolve(args.path);
        return { path: entry, namespace: 'idsync-lazy', pluginData: { name: args.path } };
      });
      b.onLoad({ filter: /.*/, namespace: 'idsync-lazy' }, (args) => {
        const dir = path.dirname(args.path);
        const undici = args.pluginData.name === 'undici';
        const direct = undici ? Object.fromEntries(Object.entries(UNDICI_LEAN).map(([k, f]) => [k, path.join(dir, f)])) : {};
        let contents = lazyModule(args.path, exportNames(args.path), direct);
        // What undici's index does besides exporting: the request API on every dispatcher.
        if (undici) contents = `Object.assign(require(${JSON.stringify(direct.Dispatcher)}).prototype, require(${JSON.stringify(path.join(dir, 'lib/api/index.js'))}));\n${contents}`;
        return { contents, loader: 'js', resolveDir: dir };
      });
    },
  };
}

/** cli.cjs: src/cli/main.ts's lazily loaded command modules replaced by stand-ins that run main.cjs (uncached: an odd argument list only). */
function commandStandInsPlugin() {
  return {
    name: 'idsync-command-stand-ins',
    setup(b) {
      b.onResolve({ filter: COMMAND_MODULE }, (args) => (args.kind === 'dynamic-import' && args.importer.endsWith(path.join('src', 'cli', 'main.ts')) ? { path: args.path, namespace: 'idsync-stand-in' } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'idsync-stand-in' }, () => ({ contents: `module.exports.run = () => require('./main.cjs').main(process.argv);`, loader: 'js' }));
      // Beside cli.cjs at run time (bin/idsync.js gives the bundle a require of its own folder).
      b.onResolve({ filter: /^\.\/main\.cjs$/ }, () => ({ path: './main.cjs', external: true }));
    },
  };
}

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

/** V8 refuses a code cache made under other flags: the ones bin/idsync.js sets. */
function runtimeFlags() {
  if (process.env.IDSYNC_WASM_OPTIMIZE !== '1' && (process.arch === 'x64' || process.arch === 'arm64')) setFlagsFromString('--liftoff-only');
}

/** Runs a bundle file's code (as bin/idsync.js does); returns its exports and the script. */
/**
 * Runs a bundle file read from `file` under the name it will have (`as`): V8 keeps the script's
 * name in the code cache made from it, and stack traces would name the temp folder.
 */
function evaluate(file, as = file) {
  const script = new vm.Script(Module.wrap(readFileSync(file, 'latin1')), { filename: as, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
  const module = { exports: {} };
  script.runInThisContext()(module.exports, Module.createRequire(as), module, as, path.dirname(as));
  return { exports: module.exports, script };
}

/**
 * The code caches starts begin from: cli.cjs's after building the program and its help text;
 * main.cjs's after loading every command's modules (module bodies; a command's first run adds
 * its own cache with the functions it ran, see bin/idsync.js).
 */
async function makeCaches(dir, finalDir) {
  runtimeFlags();
  const cli = evaluate(path.join(dir, 'cli.cjs'), path.join(finalDir, 'cli.cjs'));
  cli.exports.buildProgram(() => undefined).helpInformation();
  writeFileSync(path.join(dir, 'cli.cjs.cache'), cli.script.createCachedData());
  const main = evaluate(path.join(dir, 'main.cjs'), path.join(finalDir, 'main.cjs'));
  await Promise.all(Object.values(main.exports.COMMAND_MODULES).map((load) => load()));
  writeFileSync(path.join(dir, 'main.cjs.cache'), main.script.createCachedData());
}

/**
 * Builds the bundles of the sources under `root`; returns their folder. With `caches` (npm ci),
 * their code caches too; bin/idsync.js, rebuilding after a source change, leaves them to its
 * start (which writes the cache of what it ran) rather than load every module twice.
 */
export async function buildBundle(root, { caches = false } = {}) {
  const { build } = await import('esbuild');
  const buildDir = path.join(root, '.idsync-build');
  mkdirSync(buildDir, { recursive: true });
  const before = statSources(root);
  const temp = path.join(buildDir, `.build-${process.pid}-${Date.now()}.tmp`);
  const common = {
    absWorkingDir: root,
    entryPoints: [path.join(root, 'src/cli/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${process.versions.node.split('.')[0]}`,
    // The one ESM-only construct the sources use (src/package-root.ts); __dirname is the bundle's folder.
    define: { 'import.meta.dirname': '__dirname' },
    // bin/idsync.js decodes the bundle as latin1: esbuild's default ASCII output keeps that exact.
    charset: 'ascii',
    logLevel: 'silent',
  };
  try {
    const [result] = await Promise.all([
      build({ ...common, outfile: path.join(temp, 'main.cjs'), sourcemap: 'external', sourcesContent: false, metafile: true, plugins: [packagesPlugin()] }),
      build({ ...common, outfile: path.join(temp, 'cli.cjs'), plugins: [commandStandInsPlugin(), packagesPlugin()] }),
    ]);
    const inputs = Object.keys(result.metafile.inputs)
      .filter((f) => !f.includes(':') && !f.split('/').includes('node_modules'))
      .sort()
      .map((f) => before.get(f) ?? stampOf(root, f));
    for (const rel of ALSO) inputs.push(stampOf(root, rel));
    const stamp = { node: process.version, inputs };
    const name = `cli-${createHash('sha256').update(JSON.stringify(stamp)).digest('hex').slice(0, 16)}`;
    if (caches) await makeCaches(temp, path.join(buildDir, name));
    try {
      renameSync(temp, path.join(buildDir, name));
    } catch {
      // A concurrent start built the same sources first: keep its folder.
      rmSync(temp, { recursive: true, force: true });
    }
    const pointer = path.join(buildDir, 'current.json');
    writeFileSync(`${pointer}.${process.pid}.tmp`, `${JSON.stringify({ name, ...stamp })}\n`);
    renameSync(`${pointer}.${process.pid}.tmp`, pointer);
    for (const old of readdirSync(buildDir)) if (old.startsWith('cli-') && old !== name) rmSync(path.join(buildDir, old), { recursive: true, force: true });
    return path.join(buildDir, name);
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // `npm ci`: a failed build must not fail the install (the CLI tries again, or runs through tsx).
  const root = path.resolve(import.meta.dirname, '..');
  const t0 = performance.now();
  try {
    const dir = await buildBundle(root, { caches: true });
    process.stdout.write(`idsync: CLI bundle built in ${path.relative(root, dir)} (${Math.round(performance.now() - t0)} ms)\n`);
  } catch (err) {
    process.stderr.write(`idsync: the CLI bundle could not be built (${err?.message ?? err}); bin/idsync.js will try again on its first start, or run the sources through tsx\n`);
  }
  // Loading every command's modules for the cache left timers and handles (none of them needed).
  process.exit(0);
}
