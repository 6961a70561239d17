/**
 * State at scale (issue #14): what Redis, the ledger and the idsync process hold when the state
 * is millions of documents. Three parts, each against its own fresh redis-server (no persistence,
 * so its used_memory_peak is the run's) and its own `idsync sandbox` process, through the real CLI:
 *
 *   import   a 1,000,000-document import end to end
 *   rerun    an import of 1,000 rows over a 10,000,000-document state (synthetic ledger and stored set)
 *   enqueue  a 10,000,000-row manifest queued with --workers 0
 *
 *   npm run bench -- atscale                          every part (~1 h)
 *   npm run bench -- atscale --parts=rerun,enqueue    some parts (the others keep their last figures)
 *   npm run bench -- atscale --quick                  smaller sizes
 *   node --import tsx bench/scale.ts --parts=import --rows=50000   a probe: printed, nothing written
 *
 * Probing knobs (environment): ATSCALE_SANDBOX_ARGS (the import's sandbox flags, default
 * `--keep none`), ATSCALE_NODE_ARGS (node flags of every idsync process, e.g. --trace-gc),
 * ATSCALE_STDOUT=FILE (idsync's stdout, where --trace-gc writes), ATSCALE_TRACE=1 (idsync's RSS and
 * CPU every 2 s, Redis commandstats after the import).
 *
 * bench/run.ts runs it as its section `atscale` and writes what it returns into docs/benchmarks.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { DEFAULT_WINDOW } from '../src/engine/run-feeder.ts';
import { ApiKeys, apiKey, DEFAULT_KEY_ROOT } from '../src/store/keys.ts';
import { writeBigManifest, writeFiles } from './lib/fixtures.ts';
import { IDSYNC_BIN, idsyncEnv, REPO, startRedis, startSandboxProcess, type RedisServer, type SandboxProcess } from './lib/processes.ts';
import { buildSyntheticLedger, fillSyntheticStoredSet, syntheticPersonId, syntheticPublicId } from './lib/synthetic-state.ts';

export interface ScaleTarget {
  what: string;
  goal: string;
  figure: string;
  met: boolean;
}

interface PartResult {
  /** Documents (import, rerun's state) or rows (enqueue). */
  size: number;
  at: string;
  quick: boolean;
  /** Load average (as `uptime` says it) when the part started and when it ended. */
  load: string;
  wallSeconds: number;
  lines: string[];
  targets: ScaleTarget[];
}

const PARTS = ['import', 'rerun', 'enqueue'] as const;
type Part = (typeof PARTS)[number];

export interface ScaleSectionResult {
  title: string;
  quick: boolean;
  at: string;
  lines: string[];
  /** Empty: the targets of this section are in its own table (docs/benchmarks.md "State at scale"). */
  targets: ScaleTarget[];
  parts: Partial<Record<Part, PartResult>>;
}

export interface ScaleOptions {
  /** Scratch folder (removed by the caller). */
  work: string;
  quick: boolean;
  /** Extra node flags of every idsync process (--cpu-prof). */
  nodeArgs: string[];
  say: (s: string) => void;
  /** The command line (for --parts=… and --rows=…). */
  argv: string[];
}

const RESULTS_FILE = path.join(REPO, 'bench/results.json');

/** What bench/results.json holds of this section (kept for the parts not run) and section 1's figures. */
function earlier(): { parts: Partial<Record<Part, PartResult>>; baseline?: { inRun: number; wall: number } } {
  if (!existsSync(RESULTS_FILE)) return { parts: {} };
  const all = JSON.parse(readFileSync(RESULTS_FILE, 'utf8')) as { atscale?: Partial<ScaleSectionResult>; uploads?: { lines: string[] } };
  // Section 1's loopback row at C = 16: "| HTTP loopback | 16 | curl | wall | in run | …".
  const row = all.uploads?.lines.find((l) => l.startsWith(`| HTTP loopback | ${IMPORT_C} |`));
  const cells = row?.split('|').map((c) => Number(c.trim().replace(/,/g, '')));
  const baseline = cells && Number.isFinite(cells[4]) && Number.isFinite(cells[5]) ? { wall: cells[4]!, inRun: cells[5]! } : undefined;
  return { parts: all.atscale?.parts ?? {}, ...(baseline ? { baseline } : {}) };
}

const MB = 2 ** 20;
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const mb = (b: number) => `${fmt(b / MB, 0)} MB`;
const flag = (argv: string[], name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** The section: runs the parts asked for (--parts=…, default all), keeps the others' last figures. */
export async function stateAtScaleSection(o: ScaleOptions): Promise<ScaleSectionResult> {
  const asked = (flag(o.argv, 'parts') ?? PARTS.join(',')).split(',').filter(Boolean) as Part[];
  for (const p of asked) if (!PARTS.includes(p)) throw new Error(`unknown part ${p} (known: ${PARTS.join(', ')})`);
  const rows = flag(o.argv, 'rows') ? Number(flag(o.argv, 'rows')) : undefined;
  const before = earlier();
  const parts: Partial<Record<Part, PartResult>> = { ...before.parts };
  // The CLI builds its bundle on the first run after a source change: not inside a measurement.
  execFileSync(process.execPath, [IDSYNC_BIN, '--version'], { stdio: 'ignore' });
  for (const part of asked) {
    const dir = path.join(o.work, `atscale-${part}-${Date.now()}`);
    mkdirSync(dir, { recursive: true });
    const load = uptime();
    o.say(`atscale ${part}: ${load}`);
    const t0 = performance.now();
    try {
      const r = await RUNNERS[part]({ ...o, dir, ...(rows !== undefined ? { rows } : {}), ...(before.baseline ? { baseline: before.baseline } : {}) });
      parts[part] = { ...r, at: new Date().toISOString(), quick: o.quick, load: `${load} at its start, ${uptime()} at its end`, wallSeconds: (performance.now() - t0) / 1000 };
    } finally {
      // Gigabytes of manifests, files and state: gone before the next part.
      rmSync(dir, { recursive: true, force: true });
    }
    o.say(`atscale ${part}: done in ${fmt((performance.now() - t0) / 1000, 0)} s`);
    for (const t of parts[part]!.targets) o.say(`  ${t.met ? 'MET ' : 'MISS'} ${t.what}: ${t.figure} (goal ${t.goal})`);
  }
  return { title: '9. State at scale', quick: o.quick, at: new Date().toISOString(), lines: render(parts), targets: [], parts };
}

interface PartOptions extends ScaleOptions {
  dir: string;
  rows?: number;
  /** Section 1's loopback C = 16 figures (items/s in run, wall): the throughput to match. */
  baseline?: { inRun: number; wall: number };
}

type Measured = Omit<PartResult, 'at' | 'quick' | 'load' | 'wallSeconds'>;

const RUNNERS: Record<Part, (o: PartOptions) => Promise<Measured>> = {
  import: importPart,
  rerun: rerunPart,
  enqueue: enqueuePart,
};

// --- measuring ---------------------------------------------------------------------------------

function uptime(): string {
  const [a, b, c] = os.loadavg();
  return `load average ${fmt(a!, 2)}, ${fmt(b!, 2)}, ${fmt(c!, 2)} (${os.cpus().length} cores)`;
}

function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

/**
 * Peak RSS (VmHWM) of a process and, separately, of the largest of its descendants, and the CPU
 * seconds of the process, sampled every 100 ms (the last sample before it exits).
 */
function treeRssSampler(pid: number): { stop(): { main: number; children: number; cpu: number } } {
  let main = 0;
  let children = 0;
  let cpu = 0;
  const sample = () => {
    main = Math.max(main, procStatus(pid, 'VmHWM') ?? 0);
    cpu = Math.max(cpu, cpuSeconds(pid));
    const stack = childrenOf(pid);
    while (stack.length > 0) {
      const c = stack.pop()!;
      children = Math.max(children, procStatus(c, 'VmHWM') ?? 0);
      stack.push(...childrenOf(c));
    }
  };
  const t = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(t);
      sample();
      return { main, children, cpu };
    },
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

interface RedisMemoryInfo {
  used: number;
  peak: number;
}

/** INFO memory of a Redis, and its highest used_memory seen by sampling every 250 ms. */
class RedisMemory {
  readonly client: Redis;
  max = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(url: string) {
    this.client = new Redis(url, { maxRetriesPerRequest: 3 });
  }

  async now(): Promise<RedisMemoryInfo> {
    const info = await this.client.info('memory');
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)![1]);
    const m = { used: field('used_memory'), peak: field('used_memory_peak') };
    this.max = Math.max(this.max, m.used);
    return m;
  }

  start(): void {
    this.#timer = setInterval(() => void this.now().catch(() => undefined), 250);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.client.disconnect();
  }

  /** Memory by kind of key (MEMORY USAGE of every key): where the bytes are. */
  async byKind(): Promise<Record<string, { keys: number; bytes: number }>> {
    const out: Record<string, { keys: number; bytes: number }> = {};
    let cursor = '0';
    do {
      const [next, keys] = await this.client.scan(cursor, 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const p = this.client.pipeline();
      for (const k of keys) p.memory('USAGE', k, 'SAMPLES', '0');
      const sizes = (await p.exec())!.map(([, v]) => Number(v ?? 0));
      keys.forEach((k, i) => {
        const kind = kindOfKey(k);
        out[kind] ??= { keys: 0, bytes: 0 };
        out[kind].keys++;
        out[kind].bytes += sizes[i]!;
      });
    } while (cursor !== '0');
    return out;
  }
}

function kindOfKey(key: string): string {
  if (/:stored:[0-9a-f]+$/.test(key)) return 'stored set';
  const run = /:run:[^:]+:(\w+)$/.exec(key);
  if (run) return `run ${run[1]}`;
  if (/:lock:/.test(key)) return 'locks';
  const queue = /\}:[^:]+:(\w+)$/.exec(key);
  if (queue && !/:(limits|workers|runs)$/.test(key)) return `queue ${queue[1]}`;
  return 'other';
}

function breakdown(kinds: Record<string, { keys: number; bytes: number }>, rows: number): string {
  return Object.entries(kinds)
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([k, v]) => `${k} ${mb(v.bytes)} (${fmt(v.bytes / rows, 1)} B/row, ${fmt(v.keys)} keys)`)
    .join('; ');
}

/** Bytes of every file under a folder. */
function bytesUnder(dir: string): number {
  let n = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? bytesUnder(p) : e.isFile() ? statSync(p).size : 0;
  }
  return n;
}

interface LogLine {
  msg: string;
  time: number;
  [k: string]: unknown;
}

interface IdsyncExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
  spawnedAt: number;
  rss: { main: number; children: number; cpu: number };
  stderrTail: string;
}

/** The idsync CLI as a user runs it; its JSON log lines go to onLog as they come. */
function idsync(args: string[], env: NodeJS.ProcessEnv, opts: { nodeArgs: string[]; onLog?: (line: LogLine, kill: (sig: NodeJS.Signals) => void) => void; onSpawn?: (pid: number) => void }): Promise<IdsyncExit> {
  return new Promise((resolve, reject) => {
    const spawnedAt = Date.now();
    const t0 = performance.now();
    // ATSCALE_NODE_ARGS (e.g. --trace-gc) and ATSCALE_STDOUT=FILE: for diagnosing a probe.
    const extra = (process.env.ATSCALE_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const stdout = process.env.ATSCALE_STDOUT ? openSync(process.env.ATSCALE_STDOUT, 'w') : 'ignore';
    const child = spawn(process.execPath, [...opts.nodeArgs, ...extra, IDSYNC_BIN, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', stdout, 'pipe'] });
    const rss = treeRssSampler(child.pid!);
    opts.onSpawn?.(child.pid!);
    // ATSCALE_TRACE=1: the process's RSS and CPU every 2 s, to tell a plateau from a leak.
    const trace = process.env.ATSCALE_TRACE
      ? setInterval(() => process.stdout.write(`[atscale] t=${fmt((performance.now() - t0) / 1000, 0)} s idsync RSS ${mb(procStatus(child.pid!, 'VmRSS') ?? 0)} CPU ${fmt(cpuSeconds(child.pid!), 1)} s\n`), 2000)
      : undefined;
    let buffered = '';
    let tail = '';
    const kill = (sig: NodeJS.Signals) => child.kill(sig);
    child.stderr!.on('data', (d: Buffer) => {
      const s = String(d);
      tail = (tail + s).slice(-4000);
      buffered += s;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        try {
          opts.onLog?.(JSON.parse(line) as LogLine, kill);
        } catch {
          // not a log line
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(trace);
      resolve({ code, signal, ms: performance.now() - t0, spawnedAt, rss: rss.stop(), stderrTail: tail });
    });
  });
}

function summaryOf(reportDir: string): { itemsPerSecond: number; seconds: number; counts: Record<string, number> } {
  return JSON.parse(readFileSync(path.join(reportDir, 'summary.json'), 'utf8'));
}

interface SandboxTally {
  documents: number;
  uploads: number;
  duplicates: number;
}

/** One file of `bytes` random bytes per entry; returns their paths and sha256s. */
function smallFiles(dir: string, count: number, bytes: number): { files: string[]; shas: string[] } {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const shas: string[] = [];
  for (let i = 0; i < count; i++) {
    const data = randomBytes(bytes);
    const f = path.join(dir, `f${i}.bin`);
    writeFileSync(f, data);
    files.push(f);
    shas.push(createHash('sha256').update(data).digest('hex'));
  }
  return { files, shas };
}

async function writeLines(file: string, header: string, count: number, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(file);
  out.write(`${header}\n`);
  let chunk = '';
  for (let i = 0; i < count; i++) {
    chunk += `${line(i)}\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}

async function withServers<T>(dir: string, sandboxArgs: string[], fn: (redis: RedisServer, sandbox: SandboxProcess) => Promise<T>): Promise<T> {
  mkdirSync(path.join(dir, 'redis'), { recursive: true });
  const redis = await startRedis(path.join(dir, 'redis'));
  let sandbox: SandboxProcess | undefined;
  try {
    sandbox = await startSandboxProcess({ dir: path.join(dir, 'sandbox'), extra: sandboxArgs });
    return await fn(redis, sandbox);
  } finally {
    await sandbox?.stop().catch(() => undefined);
    await redis.stop().catch(() => undefined);
  }
}

// --- 1. a 1,000,000-document import ------------------------------------------------------------

const IMPORT_C = 16;
/** A small import first, in the same conditions: what the machine gives right now, to compare the big one with. */
const REFERENCE_ROWS = 20_000;

interface ImportRun {
  rows: number;
  ms: number;
  itemsPerSecond: number;
  redis: { before: number; after: number; peak: number; sampledMax: number };
  kinds: Record<string, { keys: number; bytes: number }>;
  rss: number;
  sandboxRss: number;
  ledgerBytes: number;
  cpu: { idsync: number; sandbox: number; redis: number };
  /** Items/s over the first and the last tenth of the rows (idsync's progress lines, once a minute). */
  firstTenth?: number;
  lastTenth?: number;
}

/** Seconds at which `done` rows were done, interpolated between progress samples. */
function timeAt(samples: Array<{ s: number; done: number }>, done: number): number {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.done >= done) return a.s + ((b.s - a.s) * (done - a.done)) / Math.max(1, b.done - a.done);
  }
  return samples.at(-1)!.s;
}

/** One import of `rows` distinct documents against a fresh Redis and sandbox, checked and measured. */
async function importRun(o: PartOptions, rows: number, dir: string): Promise<ImportRun> {
  mkdirSync(dir, { recursive: true });
  const { files } = smallFiles(path.join(dir, 'files'), 1000, 64);
  const persons = Array.from({ length: 1000 }, () => randomUUID());
  const manifest = path.join(dir, 'import.csv');
  await writeLines(manifest, 'personId,file,name,publicId', rows, (i) => `${persons[i % persons.length]},${files[i % files.length]},Doc ${i},${randomUUID()}`);
  return withServers(dir, (process.env.ATSCALE_SANDBOX_ARGS ?? '--keep none').split(' ').filter(Boolean), async (redis, sandbox) => {
    const mem = new RedisMemory(redis.url);
    const before = await mem.now();
    mem.start();
    const sandboxRss = treeRssSampler(sandbox.pid);
    const cpu0 = { sandbox: cpuSeconds(sandbox.pid), redis: cpuSeconds(redis.pid) };
    const state = path.join(dir, 'state');
    const reportDir = path.join(dir, 'report');
    o.say(`atscale import: ${fmt(rows)} rows, --concurrency ${IMPORT_C}`);
    let lastSaid = 0;
    let spawnedAt = 0;
    const progress = [{ s: 0, done: 0 }];
    const r = await idsync(['import', manifest, '--concurrency', String(IMPORT_C)], idsyncEnv(sandbox, redis.url, state, reportDir), {
      nodeArgs: o.nodeArgs,
      onSpawn: () => (spawnedAt = Date.now()),
      onLog: (l) => {
        if (typeof l.done === 'number') progress.push({ s: (l.time - spawnedAt) / 1000, done: l.done });
        // Once a minute, so that an hour-long part shows it is alive.
        if (l.time - lastSaid < 60_000) return;
        lastSaid = l.time;
        o.say(`atscale import: ${l.msg} (Redis max ${mb(mem.max)})`);
      },
    });
    const after = await mem.now();
    const sandboxPeak = sandboxRss.stop().main;
    const cpu = { idsync: r.rss.cpu, sandbox: cpuSeconds(sandbox.pid) - cpu0.sandbox, redis: cpuSeconds(redis.pid) - cpu0.redis };
    if (r.code !== 0) throw new Error(`idsync import exited ${r.code}: ${r.stderrTail}`);
    const summary = summaryOf(reportDir);
    if (summary.counts.succeeded !== rows) throw new Error(`idsync import: ${summary.counts.succeeded}/${rows} succeeded`);
    const tally = await sandbox.admin<SandboxTally>('GET', '/_admin/document-tally');
    if (tally.documents !== rows || tally.duplicates !== 0) throw new Error(`sandbox: ${tally.documents} documents, ${tally.duplicates} uploaded twice, for ${rows} rows`);
    if (process.env.ATSCALE_TRACE) o.say(`commandstats:\n${await mem.client.info('commandstats')}`);
    const kinds = await mem.byKind();
    await mem.close();
    progress.push({ s: r.ms / 1000, done: rows });
    const tenth = rows / 10;
    const rates = progress.length > 3 ? { firstTenth: tenth / timeAt(progress, tenth), lastTenth: tenth / (r.ms / 1000 - timeAt(progress, rows - tenth)) } : {};
    return {
      rows,
      ms: r.ms,
      itemsPerSecond: summary.itemsPerSecond,
      redis: { before: before.used, after: after.used, peak: after.peak, sampledMax: mem.max },
      kinds,
      rss: Math.max(r.rss.main, r.rss.children),
      sandboxRss: sandboxPeak,
      ledgerBytes: bytesUnder(path.join(state, 'ledger')),
      cpu,
      ...rates,
    };
  });
}

async function importPart(o: PartOptions): Promise<Measured> {
  const rows = o.rows ?? (o.quick ? 50_000 : 1_000_000);
  const reference = rows > REFERENCE_ROWS ? await importRun(o, REFERENCE_ROWS, path.join(o.dir, 'reference')) : undefined;
  if (reference) rmSync(path.join(o.dir, 'reference'), { recursive: true, force: true });
  const big = await importRun(o, rows, path.join(o.dir, 'big'));
  const retained = (big.redis.after - big.redis.before) / rows;
  const wallRate = (r: ImportRun) => r.rows / (r.ms / 1000);
  const cpuPerDoc = (r: ImportRun) => (1000 * (r.cpu.idsync + r.cpu.sandbox + r.cpu.redis)) / r.rows;
  const row = (r: ImportRun) =>
    `| ${fmt(r.rows)} | ${fmt(r.ms / 1000, 0)} s | ${fmt(r.itemsPerSecond)} | ${fmt(wallRate(r))} | ${r.firstTenth ? `${fmt(r.firstTenth)} / ${fmt(r.lastTenth!)}` : '—'} | ${mb(r.redis.peak)} (sampled max ${mb(r.redis.sampledMax)}) | ${fmt((r.redis.after - r.redis.before) / r.rows, 1)} B/row (${mb(r.redis.after - r.redis.before)}) | ${mb(r.rss)} | ${fmt(r.ledgerBytes / r.rows, 1)} B/document (${mb(r.ledgerBytes)}) | ${mb(r.sandboxRss)} | ${fmt((1000 * r.cpu.idsync) / r.rows, 2)} / ${fmt((1000 * r.cpu.sandbox) / r.rows, 2)} / ${fmt((1000 * r.cpu.redis) / r.rows, 2)} ms |`;
  const base = o.baseline;
  return {
    size: rows,
    lines: [
      `\`node bin/idsync.js import manifest.csv --concurrency ${IMPORT_C}\` of ${fmt(rows)} rows, each a distinct document: 1,000 files of 64 bytes shared by the rows, each row with its own explicit publicId (a derived publicId is made of personId and content, so distinct documents would need ${fmt(rows)} distinct files; explicit ids over shared files are the cheap honest way to a growing stored set). ${reference ? `First, in the same conditions, a ${fmt(REFERENCE_ROWS)}-row import of the same kind (the machine is shared: its figures say what it gave at the time). ` : ''}Each against its own fresh redis-server and sandbox; the sandbox runs with \`--keep none\` (uploads hashed and counted, then forgotten) and its document tally must show every row's document, none stored twice; the summary every row succeeded.`,
      '',
      '| rows | wall | items/s (in run) | items/s (wall) | items/s first / last tenth of the rows | Redis peak used_memory | retained in Redis after the run | idsync peak RSS | ledger | sandbox peak RSS | CPU per document: idsync / sandbox / redis-server |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...(reference ? [row(reference)] : []),
      row(big),
      '',
      `- *Redis peak*: used_memory_peak of the fresh redis-server (INFO memory also sampled every 250 ms); *retained*: used_memory after the run less before, over the rows. After the ${fmt(rows)}-row run, by kind of key (MEMORY USAGE): ${breakdown(big.kinds, rows)}.`,
      `- *idsync peak RSS*: VmHWM of the process and its children, sampled every 100 ms; *ledger*: the files under the state dir's ledger/; *CPU*: utime + stime of each process from /proc over the run; *first / last tenth*: from idsync's progress lines (once a minute), interpolated.`,
    ],
    targets: [
      { what: `${fmt(rows)}-document import: Redis peak used_memory`, goal: '≤ 300 MB', figure: mb(big.redis.peak), met: big.redis.peak <= 300 * MB },
      { what: `${fmt(rows)}-document import: retained in Redis after the run`, goal: '≤ 100 B per row', figure: `${fmt(retained, 1)} B/row`, met: retained <= 100 },
      { what: `${fmt(rows)}-document import: idsync peak RSS`, goal: '≤ 250 MB', figure: mb(big.rss), met: big.rss <= 250 * MB },
      ...(base
        ? [{ what: `${fmt(rows)}-document import: items/s, against section 1 (loopback uploads of 64 KB files at C = ${IMPORT_C}, at that section's own load)`, goal: `≥ ${fmt(base.inRun)} in run`, figure: `${fmt(big.itemsPerSecond)} in run (${fmt(wallRate(big))} wall)`, met: big.itemsPerSecond >= base.inRun }]
        : []),
      ...(reference
        ? [
            {
              what: `${fmt(rows)}-document import: items/s and CPU per document, against a ${fmt(REFERENCE_ROWS)}-row import just before`,
              goal: 'items/s ≥ 90 % of it, CPU per document ≤ 110 % (the run-to-run spread of this shared machine)',
              figure: `${fmt((100 * big.itemsPerSecond) / reference.itemsPerSecond, 0)} % (${fmt(big.itemsPerSecond)} ÷ ${fmt(reference.itemsPerSecond)}); ${fmt(cpuPerDoc(big), 2)} ms against ${fmt(cpuPerDoc(reference), 2)} ms (all three processes)`,
              met: big.itemsPerSecond >= 0.9 * reference.itemsPerSecond && cpuPerDoc(big) <= 1.1 * cpuPerDoc(reference),
            },
          ]
        : []),
    ],
  };
}

// --- 2. a rerun over a 10,000,000-document state -----------------------------------------------

const RERUN_ROWS = 1000;
/** Rows of the rerun's manifest that name documents of the state (the others are new). */
const RERUN_KNOWN = 500;
/** Imports over each state: the first process of a series is often slower (cold caches). */
const RERUN_REPEATS = 2;

interface FirstRequest {
  /** Spawn to the sandbox's first authenticate request, and to its first other request (ms). */
  loginMs: number;
  firstRequestMs: number;
  wallMs: number;
  rss: number;
  counts: Record<string, number>;
  /** idsync said it found no record of earlier uploads (it must not over a state). */
  warnedNoState: boolean;
}

/** An import timed from spawn to the sandbox's first requests (its stats, polled every 10 ms). */
async function timeToFirstRequest(o: PartOptions, redis: RedisServer, sandbox: SandboxProcess, manifest: string, state: string): Promise<FirstRequest> {
  await sandbox.admin('POST', '/_admin/reset-stats');
  const reportDir = path.join(path.dirname(manifest), `report-${path.basename(state)}`);
  let loginAt: number | undefined;
  let firstAt: number | undefined;
  let polling = true;
  let spawnedAt = 0;
  let warnedNoState = false;
  const poll = (async () => {
    while (polling && firstAt === undefined) {
      const st = await sandbox.admin<{ requests: number; byRoute: Record<string, number> }>('GET', '/_admin/stats').catch(() => undefined);
      const now = performance.now();
      if (st && spawnedAt) {
        const logins = (st.byRoute.authenticate ?? 0) + (st.byRoute.renewToken ?? 0);
        if (loginAt === undefined && logins > 0) loginAt = now;
        if (st.requests - logins > 0) firstAt = now;
      }
      await sleep(10);
    }
  })();
  const r = await idsync(['import', manifest, '--concurrency', String(IMPORT_C)], idsyncEnv(sandbox, redis.url, state, reportDir), {
    nodeArgs: o.nodeArgs,
    onSpawn: () => (spawnedAt = performance.now()),
    onLog: (l) => {
      if (/no record of earlier uploads/.test(l.msg)) warnedNoState = true;
    },
  });
  polling = false;
  await poll;
  if (r.code !== 0) throw new Error(`idsync import exited ${r.code}: ${r.stderrTail}`);
  if (loginAt === undefined || firstAt === undefined) throw new Error('the sandbox saw no request');
  return { loginMs: loginAt - spawnedAt, firstRequestMs: firstAt - spawnedAt, wallMs: r.ms, rss: Math.max(r.rss.main, r.rss.children), counts: summaryOf(reportDir).counts, warnedNoState };
}

async function rerunPart(o: PartOptions): Promise<Measured> {
  const docs = o.rows ?? (o.quick ? 200_000 : 10_000_000);
  const { files, shas } = smallFiles(path.join(o.dir, 'files'), 10, 64);
  // Rows naming documents of the state (spread over it), and new documents with fresh ids.
  const writeManifest = async (label: string) => {
    const file = path.join(o.dir, `${label}.csv`);
    // Alternating, so that the first request waits for one known row, not for all of them.
    await writeLines(file, 'personId,file,name,publicId', RERUN_ROWS, (k) => {
      if (k % 2 === 0 && k / 2 < RERUN_KNOWN) {
        const i = Math.floor(((k / 2 + 0.5) * docs) / RERUN_KNOWN);
        return `${syntheticPersonId(i)},${files[i % files.length]},Doc ${i},${syntheticPublicId(i)}`;
      }
      return `${randomUUID()},${files[k % files.length]},New ${k},${randomUUID()}`;
    });
    return file;
  };
  return withServers(o.dir, ['--keep', 'none'], async (redis, sandbox) => {
    const empty: FirstRequest[] = [];
    for (let n = 1; n <= RERUN_REPEATS; n++) {
      o.say(`atscale rerun: the same manifest shape over an empty state first (${n}/${RERUN_REPEATS})`);
      await redis.flush();
      const r = await timeToFirstRequest(o, redis, sandbox, await writeManifest(`empty-${n}`), path.join(o.dir, `state-empty-${n}`));
      if (r.counts.succeeded !== RERUN_ROWS) throw new Error(`over an empty state: ${JSON.stringify(r.counts)}`);
      empty.push(r);
    }

    await redis.flush();
    const mem = new RedisMemory(redis.url);
    const before = await mem.now();
    const state = path.join(o.dir, 'state-big');
    o.say(`atscale rerun: building a ledger of ${fmt(docs)} documents`);
    let t = performance.now();
    await buildSyntheticLedger(state, sandbox.url, docs, shas, o.say);
    const ledgerSeconds = (performance.now() - t) / 1000;
    const ledgerBytes = bytesUnder(path.join(state, 'ledger'));
    o.say(`atscale rerun: filling the stored set in Redis (ledger built in ${fmt(ledgerSeconds, 0)} s)`);
    t = performance.now();
    await fillSyntheticStoredSet(mem.client, sandbox.url, docs, shas, o.say);
    const fillSeconds = (performance.now() - t) / 1000;
    const filled = await mem.now();
    const kinds = await mem.byKind();
    await mem.close();
    const storedBytes = filled.used - before.used;

    const big: FirstRequest[] = [];
    for (let n = 1; n <= RERUN_REPEATS; n++) {
      o.say(`atscale rerun: the import over the big state (${n}/${RERUN_REPEATS})`);
      const r = await timeToFirstRequest(o, redis, sandbox, await writeManifest(`big-${n}`), state);
      if ((r.counts.skipped ?? 0) !== RERUN_KNOWN || r.counts.succeeded !== RERUN_ROWS - RERUN_KNOWN) throw new Error(`over the big state: ${JSON.stringify(r.counts)}`);
      big.push(r);
    }
    const worst = (rs: FirstRequest[], f: (r: FirstRequest) => number) => Math.max(...rs.map(f));
    const bigFirst = worst(big, (r) => r.firstRequestMs);
    const bigRss = worst(big, (r) => r.rss);
    const row = (label: string, r: FirstRequest) =>
      `| ${label} | ${fmt(r.loginMs / 1000, 2)} s | **${fmt(r.firstRequestMs / 1000, 2)} s** | ${fmt(r.wallMs / 1000, 1)} s | ${mb(r.rss)} | ${r.counts.succeeded ?? 0} uploaded, ${r.counts.skipped ?? 0} skipped | ${r.warnedNoState ? 'yes' : 'no'} |`;
    return {
      size: docs,
      lines: [
        `${fmt(RERUN_ROWS)} rows (every other row, ${fmt(RERUN_KNOWN)} in all, names a document of the state, spread over it, with its content; the ${fmt(RERUN_ROWS - RERUN_KNOWN)} others are new), \`node bin/idsync.js import manifest.csv --concurrency ${IMPORT_C}\`, ${RERUN_REPEATS} times over an empty state (fresh state dir and Redis each time), then ${RERUN_REPEATS} times (a new manifest of the same shape each time) over a state of ${fmt(docs)} documents: a ledger of one segment (what compactions leave) and the stored set in Redis, written directly (bench/lib/synthetic-state.ts). Times from spawn, as the sandbox saw the requests (its stats polled every 10 ms).`,
        '',
        '| state | login | first other request | wall | idsync peak RSS | rows | "no record of earlier uploads" warning |',
        '|---|---|---|---|---|---|---|',
        ...empty.map((r, i) => row(`empty (run ${i + 1})`, r)),
        ...big.map((r, i) => row(`${fmt(docs)} documents (run ${i + 1})`, r)),
        '',
        `The state: ledger ${mb(ledgerBytes)} (${fmt(ledgerBytes / docs, 1)} B/document; built in ${fmt(ledgerSeconds, 0)} s), stored set in Redis ${mb(storedBytes)} of used_memory (**${fmt(storedBytes / docs, 1)} B/document**; MEMORY USAGE: ${breakdown(kinds, docs)}; filled in ${fmt(fillSeconds, 0)} s).`,
      ],
      targets: [
        { what: `rerun over ${fmt(docs)} documents: first request (worst of ${RERUN_REPEATS})`, goal: '≤ 5 s', figure: `${fmt(bigFirst / 1000, 2)} s (empty state: ${fmt(worst(empty, (r) => r.firstRequestMs) / 1000, 2)} s)`, met: bigFirst <= 5000 },
        { what: `rerun over ${fmt(docs)} documents: idsync peak RSS (worst of ${RERUN_REPEATS})`, goal: '≤ 250 MB', figure: `${mb(bigRss)} (empty state: ${mb(worst(empty, (r) => r.rss))})`, met: bigRss <= 250 * MB },
      ],
    };
  });
}

// --- 3. a 10,000,000-row manifest queued with --workers 0 --------------------------------------

interface JobMemory {
  /** Mean MEMORY USAGE of a job's hash, and of its `data` field's value (bytes of text). */
  hash: number;
  dataBytes: number;
  sampled: number;
  wait: number;
  events: number;
}

/** What a queue's jobs cost in Redis: a sample of job hashes, the wait list, the events stream. */
async function jobMemory(redis: Redis, queue: string): Promise<JobMemory> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${queue}:r*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0' && keys.length < 200);
  const sample = keys.slice(0, 200);
  let hash = 0;
  let dataBytes = 0;
  for (const k of sample) {
    hash += Number(await redis.memory('USAGE', k, 'SAMPLES', '0'));
    dataBytes += Buffer.byteLength((await redis.hget(k, 'data')) ?? '');
  }
  const usage = async (k: string) => Number((await redis.memory('USAGE', k, 'SAMPLES', '0')) ?? 0);
  return { hash: hash / Math.max(1, sample.length), dataBytes: dataBytes / Math.max(1, sample.length), sampled: sample.length, wait: await usage(`${queue}:wait`), events: await usage(`${queue}:events`) };
}

/** The feeder queues whole batches of up to 500 rows: a full window may hold up to that fewer jobs. */
const FEED_BATCH = 500;

async function enqueuePart(o: PartOptions): Promise<Measured> {
  const rows = o.rows ?? (o.quick ? 200_000 : 10_000_000);
  const files = writeFiles(path.join(o.dir, 'files'), 10, 1024);
  const manifest = path.join(o.dir, 'big.csv');
  o.say(`atscale enqueue: writing a ${fmt(rows)}-row manifest`);
  await writeBigManifest(manifest, rows, files);
  const manifestBytes = statSync(manifest).size;
  const window = Math.min(rows, DEFAULT_WINDOW);
  return withServers(o.dir, [], async (redis, sandbox) => {
    const mem = new RedisMemory(redis.url);
    const before = await mem.now();
    mem.start();
    const at: Record<string, number> = {};
    let runId: string | undefined;
    let full: { queued: number; used: number; at: number } | undefined;
    let jobs: JobMemory | undefined;
    let killed = false;
    let watching: Promise<void> | undefined;
    o.say(`atscale enqueue: idsync import --workers 0 (${mb(manifestBytes)} manifest)`);
    const r = await idsync(['import', manifest, '--workers', '0'], idsyncEnv(sandbox, redis.url, path.join(o.dir, 'state'), path.join(o.dir, 'report')), {
      nodeArgs: o.nodeArgs,
      onLog: (l, kill) => {
        for (const [key, re] of [['login', /^logged in$/], ['redis', /^queue store ready$/], ['validated', /^--workers 0/]] as const) if (at[key] === undefined && re.test(l.msg)) at[key] = l.time;
        if (typeof l.runId === 'string') runId ??= l.runId;
        if (at.validated === undefined || watching) return;
        o.say(`atscale enqueue: validation pass done in ${fmt((at.validated - at.redis!) / 1000, 1)} s; waiting for the window to fill`);
        // The window fills, then the feeder waits for room that no worker makes: measured once the
        // queue has held the same number of jobs for 3 s, then the process is killed.
        watching = (async () => {
          const prefix = new ApiKeys(DEFAULT_KEY_ROOT, apiKey(sandbox.url)).queuePrefix;
          const wait = `${prefix}:${runId}:wait`;
          let last = -1;
          let since = performance.now();
          let changedAt = Date.now();
          while (!killed) {
            await sleep(500);
            const n = await mem.client.llen(wait);
            if (performance.now() - since > 600_000) {
              killed = true;
              kill('SIGKILL'); // stuck below the window for 10 minutes: reported as not filled
              break;
            }
            if (n !== last) {
              last = n;
              since = performance.now();
              changedAt = Date.now();
            } else if (n >= window - FEED_BATCH && performance.now() - since >= 3000) {
              const m = await mem.now();
              full = { queued: n, used: m.used, at: changedAt };
              killed = true;
              kill('SIGKILL');
              jobs = await jobMemory(mem.client, `${prefix}:${runId}`);
            }
          }
        })();
      },
    });
    await watching;
    const end = await mem.now();
    await mem.close();
    if (!full) throw new Error(`enqueue: the window never filled (exit ${r.code}): ${r.stderrTail}`);
    const validateSeconds = (at.validated! - at.redis!) / 1000;
    const perJob = (full.used - before.used) / full.queued;
    return {
      size: rows,
      lines: [
        `\`node bin/idsync.js import big.csv --workers 0\` over a manifest of ${fmt(rows)} rows (${mb(manifestBytes)}; rows point at 10 real 1 KB files, with explicit publicIds), no worker anywhere: the command reads and checks the whole manifest first (every row parsed, its shape checked: a manifest that cannot be parsed sends nothing), registers the run, then the feeder validates rows (GUIDs, name, file stat + access) and queues them until the window of ${fmt(DEFAULT_WINDOW)} jobs is full, and waits for room. Measured once the queue had held the same number of jobs for 3 s; the process is then killed (it would wait for workers).`,
        '',
        '| rows | spawn → logged in (hashing the manifest) | validation pass | rows/s | window filled | jobs queued | Redis peak used_memory | Redis per queued job | idsync peak RSS |',
        '|---|---|---|---|---|---|---|---|---|',
        `| ${fmt(rows)} | ${fmt((at.login! - r.spawnedAt) / 1000, 1)} s | ${fmt(validateSeconds, 1)} s | **${fmt(rows / validateSeconds)}** | ${fmt((full.at - at.validated!) / 1000, 1)} s later (±0.5 s) | ${fmt(full.queued)} | ${mb(Math.max(end.peak, mem.max))} | ${fmt(perJob, 0)} B | ${mb(Math.max(r.rss.main, r.rss.children))} |`,
        '',
        ...(jobs ? [`Where a queued job's bytes are (MEMORY USAGE): its hash ${fmt(jobs.hash, 0)} B on average (${fmt(jobs.sampled)} sampled: name, data = the signed payload of ${fmt(jobs.dataBytes, 0)} B, opts, timestamps), the wait list ${fmt(jobs.wait / full.queued, 1)} B per job, BullMQ's events stream ${mb(jobs.events)} (capped at ~10,000 events).`, ''] : []),
        `The validation pass is timed between idsync's log lines "queue store ready" (Redis open; then the ledger opens and the pass starts) and "--workers 0: waiting for …" (the pass is over and the run registered). Redis per queued job: used_memory with the window full, less before the command, over the jobs queued.`,
      ],
      targets: [
        { what: `${fmt(rows)}-row manifest, --workers 0: Redis peak used_memory`, goal: '≤ 300 MB', figure: `${mb(Math.max(end.peak, mem.max))} (${fmt(perJob, 0)} B per queued job)`, met: Math.max(end.peak, mem.max) <= 300 * MB },
      ],
    };
  });
}

// --- the section's text ------------------------------------------------------------------------

const PART_TITLES: Record<Part, (size: string) => string> = {
  import: (n) => `9.1 A ${n}-document import`,
  rerun: (n) => `9.2 A rerun over a ${n}-document state`,
  enqueue: (n) => `9.3 A ${n}-row manifest queued with \`--workers 0\``,
};

function render(parts: Partial<Record<Part, PartResult>>): string[] {
  const out = ['Targets of issue #14, each part against its own fresh redis-server (no persistence) and `idsync sandbox` process, through the real CLI with `REDIS_URL` set and a fresh state dir.', '', '| target | goal | figure | met |', '|---|---|---|---|'];
  for (const p of PARTS) for (const t of parts[p]?.targets ?? []) out.push(`| ${t.what} | ${t.goal} | ${t.figure} | ${t.met ? 'yes' : '**no**'} |`);
  for (const p of PARTS) {
    const r = parts[p];
    if (!r) continue;
    out.push('', `### ${PART_TITLES[p](fmt(r.size))}`, '', `_Measured ${r.at}${r.quick ? ' with `--quick` (smaller sizes)' : ''}; the part took ${fmt(r.wallSeconds / 60, 1)} min of wall time; machine ${r.load}._`, '', ...r.lines);
  }
  return out;
}

// --- probe: node --import tsx bench/scale.ts --parts=… [--rows=N] [--quick] -----------------------

if (process.argv[1] === import.meta.filename) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'idsync-atscale-'));
  const argv = process.argv.slice(2);
  try {
    const r = await stateAtScaleSection({ work, quick: argv.includes('--quick'), nodeArgs: [], say: (s) => process.stdout.write(`[atscale] ${s}\n`), argv });
    process.stdout.write(`${r.lines.join('\n')}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
