import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'csv-parse/sync';
import type { Sandbox } from '../../src/sandbox/index.ts';
import { IDSYNC_BIN, REPO_ROOT } from '../helpers/fixtures.ts';

export interface ChaosRecord {
  scenario: string;
  faults: string;
  items: number;
  succeeded: number;
  lost: number;
  duplicates: number;
  reportComplete: boolean;
  seconds: number;
  requests: Record<string, number>;
}

const records: ChaosRecord[] = [];

export function record(r: ChaosRecord): void {
  records.push(r);
}

/** docs/reliability.md from what this chaos run saw (the tests assert; this only writes it down). */
export function writeReliabilityDoc(): void {
  if (records.length === 0) return;
  const lines = [
    '# Reliability (chaos suite)',
    '',
    `Written by \`npm run test:chaos\` (test/chaos/) on ${new Date().toISOString()}, Node ${process.versions.node}. Every scenario imports a manifest against the sandbox, then checks through the sandbox's own records that every document is stored exactly once (\`uploads === 1\`, sha256 equal to the file's), and that the report has one line per manifest row.`,
    '',
    '| scenario | faults injected | items | succeeded | lost | stored twice | report complete | time | sandbox answers |',
    '|---|---|---|---|---|---|---|---|---|',
    ...records.map(
      (r) =>
        `| ${r.scenario} | ${r.faults} | ${r.items} | ${r.succeeded} | ${r.lost} | ${r.duplicates} | ${r.reportComplete ? 'yes' : '**no**'} | ${r.seconds.toFixed(1)} s | ${Object.entries(r.requests)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')} |`,
    ),
    '',
    'Reproduce: `npm run test:chaos` (add `IDSYNC_SOAK_SECONDS=600` for the soak). Lost = a manifest row whose document the sandbox does not hold; stored twice = a document the sandbox stored more than once.',
    '',
  ];
  writeFileSync(path.join(REPO_ROOT, 'docs/reliability.md'), lines.join('\n'));
}

export interface Verdict {
  succeeded: number;
  lost: number;
  duplicates: number;
  reportComplete: boolean;
}

/** What the sandbox holds against what the report says, row by row. */
export function verify(sandbox: Sandbox, reportDir: string, items: number): Verdict {
  const report = parse(readFileSync(path.join(reportDir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
  const docs = new Map(sandbox.documents().map((d) => [`${d.personId}/${d.documentId}`, d]));
  let lost = 0;
  let duplicates = 0;
  let succeeded = 0;
  for (const row of report) {
    if (row.status === 'succeeded' || row.status === 'skipped') succeeded++;
    const doc = docs.get(`${row.personId}/${row.documentId}`);
    if (!doc || doc.sha256 !== row.sha256) lost++;
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
