import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'csv-parse/sync';
import { Redis } from 'ioredis';
import { afterAll, expect, inject } from 'vitest';
import { PERMISSIONS, startSandbox, type FaultSettings, type Sandbox } from '../../src/sandbox/index.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { IDSYNC_BIN, REPO_ROOT } from '../helpers/fixtures.ts';
import { keyPrefixFor } from '../helpers/job-runs.ts';
import { appendRecord, type ChaosRecord } from './reliability-doc.ts';

export type { ChaosRecord } from './reliability-doc.ts';

/**
 * Notes what a scenario saw for docs/reliability.md (written when the suite ends, see
 * chaos-setup.ts), with the test that saw it.
 */
export function record(r: ChaosRecord): void {
  const state = expect.getState();
  const file = path.basename(state.testPath ?? 'unknown', '.test.ts');
  // As the hand-written rows name tests, so that test/unit/reliability-doc.test.ts checks these too.
  appendRecord(inject('chaosRecords'), file, { ...r, test: `\`test/chaos/${file}.test.ts\`: "${state.currentTestName?.split(' > ').pop() ?? ''}"` });
}

export interface Verdict {
  succeeded: number;
  lost: number;
  duplicates: number;
  reportComplete: boolean;
}

type ReportLine = Record<string, string>;

function readReport(reportDir: string): ReportLine[] {
  return parse(readFileSync(path.join(reportDir, 'report.csv')), { columns: true }) as ReportLine[];
}

/** sha256 of each manifest row's file (row 1 first), as read from disk now. */
function fileHashes(manifest: string): string[] {
  const rows = parse(readFileSync(manifest), { columns: true }) as Array<Record<string, string>>;
  return rows.map((r) => createHash('sha256').update(readFileSync(path.resolve(path.dirname(manifest), r.file!))).digest('hex'));
}

/**
 * What the sandbox holds against what the report says, row by row: a row counts as lost unless
 * the sandbox holds its document with the sha256 of the row's file (`manifest`, when given) and of
 * the report; stored twice when the sandbox took it more than once. A rerun's report lists rows
 * done by an earlier invocation as `skipped, done-earlier` without their ids (their results were
 * retired from Redis once reported): those are looked up in the `earlier` reports.
 */
export function verify(sandbox: Sandbox, reportDir: string, items: number, options: { manifest?: string; earlier?: string[] } = {}): Verdict {
  const report = readReport(reportDir);
  const earlier = (options.earlier ?? []).map(readReport);
  const hashes = options.manifest ? fileHashes(options.manifest) : undefined;
  const docs = new Map(sandbox.documents().map((d) => [`${d.personId}/${d.documentId}`, d]));
  let lost = 0;
  let duplicates = 0;
  let succeeded = 0;
  for (const line of report) {
    if (line.status === 'succeeded' || line.status === 'skipped') succeeded++;
    const row = !line.documentId && line.action?.startsWith('done-earlier') ? (earlier.map((e) => e.find((l) => l.row === line.row && l.documentId)).find(Boolean) ?? line) : line;
    const doc = docs.get(`${row.personId}/${row.documentId}`);
    const fileSha = hashes?.[Number(line.row) - 1];
    if (!doc || doc.sha256 !== row.sha256 || (fileSha !== undefined && doc.sha256 !== fileSha)) lost++;
    else if (doc.uploads !== 1) duplicates++;
  }
  // Documents the sandbox holds more than once, whatever the report says.
  const extra = [...docs.values()].filter((d) => d.uploads !== 1).length;
  const rows = report.map((r) => Number(r.row));
  const reportComplete = report.length === items && rows.every((r, i) => r === i + 1);
  return { succeeded, lost: lost + Math.max(0, items - report.length), duplicates: Math.max(duplicates, extra), reportComplete };
}

export function sandboxAnswers(sandbox: Sandbox): Record<string, number> {
  const st = sandbox.stats();
  return { requests: st.requests, ...st.status, logins: st.logins, renewals: st.renewals };
}

export interface CliProcess {
  child: ChildProcess;
  exited: Promise<number>;
  output(): { stdout: string; stderr: string };
  waitForLog(text: string, ms?: number): Promise<void>;
}

/** bin/idsync.js as a user runs it (JSON logs on stderr). */
export function startCli(args: string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [IDSYNC_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', IDSYNC_LOG_FORMAT: 'json', IDSYNC_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += String(d)));
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : -2))));
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    async waitForLog(text, ms = 30_000) {
      await waitFor(() => stderr.includes(text), ms, `log line "${text}"`);
    },
  };
}

export async function waitFor(predicate: () => boolean, ms = 60_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export const CHAOS_PASSWORD = 'chaos-pass-1';

/** API faults of every kind at once: the mixed scenario and the soak. */
export const MIXED: FaultSettings = {
  seed: 11,
  failRate: 0.08,
  throttleRate: 0.02,
  retryAfterSeconds: 1,
  resetRate: 0.05,
  lostResponseRate: 0.08,
  revokeEverySeconds: 3,
};

export function describeFaults(f: FaultSettings, tokenTtl?: number): string {
  const parts = Object.entries(f)
    .filter(([k]) => k !== 'seed')
    .map(([k, v]) => `${k} ${v}`);
  if (tokenTtl) parts.push(`token TTL ${tokenTtl} s`);
  return parts.join(', ') || 'none';
}

const sandboxes: Sandbox[] = [];

/** A sandbox with one user (`migrator`) and these faults; closed after the file's tests. */
export async function chaosSandbox(faults: FaultSettings, tokenTtlSeconds?: number): Promise<Sandbox> {
  const s = await startSandbox({ admin: true, users: [{ username: 'migrator', password: CHAOS_PASSWORD, permissions: [...PERMISSIONS] }], faults, ...(tokenTtlSeconds ? { tokenTtlSeconds } : {}) });
  sandboxes.push(s);
  return s;
}

afterAll(async () => {
  for (const s of sandboxes.splice(0)) await s.close().catch(() => {});
});

/**
 * The environment of an idsync process of a test: its own state dir (`state-<name>`), the test
 * folder's report dir unless given, and the test folder's key prefix (every process of a test
 * shares its Redis state, no two tests do).
 */
export function cliEnv(s: Sandbox, dir: string, redisUrl: string, name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    IDSYNC_API_URL: s.url,
    IDSYNC_USERNAME: 'migrator',
    IDSYNC_PASSWORD: CHAOS_PASSWORD,
    REDIS_URL: redisUrl,
    IDSYNC_REDIS_PREFIX: keyPrefixFor(dir),
    IDSYNC_STATE_DIR: path.join(dir, `state-${name}`),
    IDSYNC_REPORT_DIR: path.join(dir, 'report'),
    IDSYNC_ATTEMPTS: '12',
    // A killed worker's jobs come back within seconds, not the default 30.
    IDSYNC_LOCK_DURATION_MS: '3000',
    IDSYNC_STALLED_INTERVAL_MS: '1000',
    ...extra,
  };
}

export function assertExactlyOnce(v: Verdict, items: number): void {
  expect(v.lost, 'documents lost').toBe(0);
  expect(v.duplicates, 'documents stored twice').toBe(0);
  expect(v.reportComplete, 'one report line per manifest row').toBe(true);
  expect(v.succeeded).toBe(items);
}

/** Runs the CLI to its end (killed after `ms`): its exit code and output. */
export async function runCli(args: string[], env: Record<string, string>, ms = 240_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = startCli(args, env);
  const code = await Promise.race([p.exited, sleep(ms).then(() => -99)]);
  if (code === -99) p.child.kill('SIGKILL');
  return { code, ...p.output() };
}

/** What the shared Redis says of each document the sandbox holds (stored / doubt / nothing). */
export async function redisStateOf(redisUrl: string, dir: string, apiUrl: string, docs: Array<{ personId: string; documentId: string }>): Promise<Record<string, number>> {
  const redis = new Redis(redisUrl);
  try {
    const store = new ApiStore(redis, { apiUrl, root: keyPrefixFor(dir) });
    const counts: Record<string, number> = { stored: 0, doubt: 0, unknown: 0 };
    for (const d of docs) counts[(await store.documents.lookup(d.personId, d.documentId))?.state ?? 'unknown']!++;
    return counts;
  } finally {
    redis.disconnect();
  }
}

/** Rows of a report by `status/action` (e.g. `skipped/exists-on-server: 60`). */
export function reportTally(reportDir: string): Record<string, number> {
  const report = parse(readFileSync(path.join(reportDir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
  const tally: Record<string, number> = {};
  for (const row of report) {
    const key = `${row.status}/${(row.status === 'failed' ? row.errorCode : row.action) || '-'}`;
    tally[key] = (tally[key] ?? 0) + 1;
  }
  return tally;
}

export function tallyText(tally: Record<string, number>): string {
  return Object.entries(tally)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
}
