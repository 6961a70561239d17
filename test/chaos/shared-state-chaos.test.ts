/**
 * One shared truth (issue #14): what one state dir knows must not be needed by a rerun from
 * another. Doubt (an upload that may have reached the server) and confirmed uploads are recorded
 * in the shared Redis as well as in the machine's ledger, so a rerun from another state dir on
 * the same Redis asks before sending and never sends what was confirmed. Checked, like every
 * chaos scenario, through the sandbox's own records.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmdirSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, inject } from 'vitest';
import type { FaultSettings } from '../../src/sandbox/index.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { writeImportManifest } from '../helpers/job-runs.ts';
import { assertExactlyOnce, chaosSandbox, cliEnv, describeFaults, record, redisStateOf, reportTally, runCli, sandboxAnswers, startCli, tallyText, verify, waitFor } from './chaos-helpers.ts';

/** Whether this process may mount a tmpfs (root, and a kernel or container that allows it). */
const tmpfsWorks = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = path.join(os.tmpdir(), `idsync-tmpfs-probe-${process.pid}`);
  try {
    mkdirSync(probe, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(probe);
  }
})();

describe('one shared truth: a rerun from another state dir on the same Redis', () => {
  it('every upload response lost with --attempts 1 in state dir A, then the same import from state dir B', async () => {
    const items = 60;
    const faults: FaultSettings = { seed: 21, lostResponseRate: 1 };
    const s = await chaosSandbox(faults);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const redisUrl = inject('redisUrl');
    const t0 = Date.now();

    const first = await runCli(['import', manifest, '--attempts', '1'], cliEnv(s, dir, redisUrl, 'a', { IDSYNC_REPORT_DIR: path.join(dir, 'report-a') }));
    expect(first.code, first.stderr.slice(-3000)).toBe(1);
    const firstTally = reportTally(path.join(dir, 'report-a'));
    const failedFirst = Object.entries(firstTally).filter(([k]) => k.startsWith('failed/'));
    expect(failedFirst.reduce((n, [, v]) => n + v, 0), tallyText(firstTally)).toBe(items);
    // Every document reached the server; no answer said so. Redis holds a doubt mark for each.
    expect(s.documents().length).toBe(items);
    const marks = await redisStateOf(redisUrl, dir, s.url, s.documents());
    expect(marks.doubt).toBe(items);

    // Another machine (another state dir, an empty ledger) runs the same import on the same Redis.
    // Responses are still lost: any upload it sent would be stored a second time.
    const uploadsBefore = s.stats().uploadRequests;
    const second = await runCli(['import', manifest], cliEnv(s, dir, redisUrl, 'b', { IDSYNC_REPORT_DIR: path.join(dir, 'report-b') }));
    const rerunUploads = s.stats().uploadRequests - uploadsBefore;
    const v = verify(s, path.join(dir, 'report-b'), items, { manifest, earlier: [path.join(dir, 'report-a')] });
    const tally = reportTally(path.join(dir, 'report-b'));
    record({
      scenario: 'every upload response lost, `--attempts 1`, state dir A; then the same import from state dir B on the same Redis',
      faults: describeFaults(faults),
      items,
      ...v,
      seconds: (Date.now() - t0) / 1000,
      requests: sandboxAnswers(s),
      notes: `run A: exit ${first.code}, ${tallyText(firstTally)}, ${marks.doubt} doubt marks in Redis; rerun B: exit ${second.code}, ${rerunUploads} upload requests, ${tallyText(tally)}`,
    });
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    expect(rerunUploads, 'uploads sent by the rerun').toBe(0);
    assertExactlyOnce(v, items);
  });

  it.skipIf(!tmpfsWorks)("the ledger's disk fills mid-run (state dir on a small tmpfs), then a rerun from another state dir", async () => {
    const items = 200;
    // Latency keeps uploads in flight (their ledger `start` written) when the disk fills.
    const faults: FaultSettings = { seed: 4, latencyMs: 300 };
    const s = await chaosSandbox(faults);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const redisUrl = inject('redisUrl');
    const stateA = path.join(dir, 'state-a');
    mkdirSync(stateA);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', stateA]);
    const t0 = Date.now();
    let first: { code: number; stderr: string };
    try {
      const importer = startCli(['import', manifest, '--attempts', '3'], cliEnv(s, dir, redisUrl, 'a', { IDSYNC_REPORT_DIR: path.join(dir, 'report-a') }));
      try {
        await waitFor(() => s.documents().length >= items * 0.25, 120_000, '25 % stored');
        fillDisk(path.join(stateA, 'filler'));
        first = { code: await Promise.race([importer.exited, sleep(240_000).then(() => -99)]), stderr: importer.output().stderr };
      } finally {
        importer.child.kill('SIGKILL');
        await importer.exited;
      }
    } finally {
      execFileSync('umount', [stateA]);
    }
    // Every upload the API confirmed is recorded as stored in Redis, ledger or not.
    const confirmed = s.documents();
    const marks = await redisStateOf(redisUrl, dir, s.url, confirmed);
    const refused = first.stderr.split('\n').filter((l) => l.includes('the ledger could not record a stored document')).length;
    const firstTally = reportTally(path.join(dir, 'report-a'));
    expect(marks.stored, `documents the API confirmed (${confirmed.length}) recorded as stored in Redis`).toBe(confirmed.length);
    expect(refused, 'confirmed uploads whose ledger `stored` line the full disk refused').toBeGreaterThan(0);
    // The first `start` the ledger cannot write stops the run, naming the state dir.
    expect(first.code).toBe(2);
    expect(first.stderr).toMatch(/the ledger in \S+ cannot be written \(ENOSPC: no space left on the device\)/);

    const uploadsBefore = s.stats().uploadRequests;
    const second = await runCli(['import', manifest], cliEnv(s, dir, redisUrl, 'b', { IDSYNC_REPORT_DIR: path.join(dir, 'report-b') }));
    const rerunUploads = s.stats().uploadRequests - uploadsBefore;
    const v = verify(s, path.join(dir, 'report-b'), items, { manifest, earlier: [path.join(dir, 'report-a')] });
    record({
      scenario: "the ledger's disk full mid-run (state dir A on a 1 MiB tmpfs, filled at 25 %); then the same import from state dir B on the same Redis",
      faults: describeFaults(faults),
      items,
      ...v,
      seconds: (Date.now() - t0) / 1000,
      requests: sandboxAnswers(s),
      notes: `run A: exit ${first.code} (${tallyText(firstTally)}); ${refused} confirmed uploads whose ledger \`stored\` write failed; all ${confirmed.length} confirmed uploads stored in Redis; rerun B: exit ${second.code}, ${rerunUploads} upload requests for the ${items - confirmed.length} not stored, ${tallyText(reportTally(path.join(dir, 'report-b')))}`,
    });
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    expect(rerunUploads).toBe(items - confirmed.length);
    assertExactlyOnce(v, items);
  });
});

/** Writes into `file` until the filesystem holding it has no byte left. */
function fillDisk(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [65536, 4096, 512, 64, 1]) {
      const chunk = Buffer.alloc(size, 0x2e);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}
