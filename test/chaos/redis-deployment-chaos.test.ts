/**
 * Real Redis deployments under chaos (issue #14): a worker killed with SIGKILL on a 3-master
 * Redis Cluster, and Sentinel failovers (ordered, and the master killed) during an import. The
 * work is done by `idsync worker` processes, each with a state dir of its own, so that no
 * machine's ledger can cover for what the shared Redis forgot: a retry that lands on another
 * worker knows only what Redis knows.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { FaultSettings, Sandbox } from '../../src/sandbox/index.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { writeImportManifest } from '../helpers/job-runs.ts';
import { startTestCluster, startTestSentinels, type TestSentinels } from '../helpers/redis-server.ts';
import { assertExactlyOnce, chaosSandbox, cliEnv, describeFaults, record, reportTally, sandboxAnswers, startCli, tallyText, verify, waitFor, type CliProcess } from './chaos-helpers.ts';

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop().catch(() => undefined);
});

/** `idsync worker` processes of one test, each with its own state dir; all killed at the end. */
class WorkerFleet {
  readonly workers: CliProcess[] = [];
  constructor(
    private readonly s: Sandbox,
    private readonly dir: string,
    private readonly redisUrl: (i: number) => string,
  ) {}

  async start(name: string, concurrency = 8): Promise<CliProcess> {
    const w = startCli(['worker', '--concurrency', String(concurrency)], cliEnv(this.s, this.dir, this.redisUrl(this.workers.length), name));
    this.workers.push(w);
    await w.waitForLog('worker started', 60_000);
    return w;
  }

  killAll(): void {
    for (const w of this.workers) w.child.kill('SIGKILL');
  }
}

async function exitOf(p: CliProcess, ms = 300_000): Promise<number> {
  return Promise.race([p.exited, sleep(ms).then(() => -99)]);
}

describe('Redis deployments under chaos: zero lost, zero stored twice, complete report', () => {
  it('kill -9 of a worker on a 3-master Redis Cluster mid-run, replaced by another', async () => {
    const items = 300;
    const faults: FaultSettings = { seed: 7, latencyMs: 15, failRate: 0.03, resetRate: 0.02, lostResponseRate: 0.03 };
    const s = await chaosSandbox(faults);
    const dir = tempDir('chaos');
    const cluster = await startTestCluster(path.join(dir, 'cluster'), 3);
    stops.push(() => cluster.stop());
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const t0 = Date.now();
    // Each process is pointed at another node: any node works.
    const fleet = new WorkerFleet(s, dir, (i) => cluster.url(i % 3));
    const importer = startCli(['import', manifest, '--workers', '0'], cliEnv(s, dir, cluster.url(2), 'import'));
    let code: number;
    try {
      const a = await fleet.start('a');
      await fleet.start('b');
      await waitFor(() => s.documents().length >= items * 0.4, 120_000, '40 % stored');
      a.child.kill('SIGKILL');
      await fleet.start('c');
      code = await exitOf(importer);
    } finally {
      fleet.killAll();
      importer.child.kill('SIGKILL');
    }
    const v = verify(s, path.join(dir, 'report'), items, { manifest });
    record({
      scenario: 'kill -9 of an `idsync worker` on a 3-master Redis Cluster at 40 %, replaced (2 workers × C 8, own state dirs, import --workers 0)',
      faults: describeFaults(faults),
      items,
      ...v,
      seconds: (Date.now() - t0) / 1000,
      requests: sandboxAnswers(s),
      notes: `import exit ${code}; ${tallyText(reportTally(path.join(dir, 'report')))}`,
    });
    expect(code, importer.output().stderr.slice(-3000)).toBe(0);
    assertExactlyOnce(v, items);
  });

  // The run must outlast the failover: Sentinel converts the deposed master (and throws away what
  // it was sent meanwhile) some 11 s after an ordered failover, and a killed master is promoted
  // away from after its down-after time. Both workers write through Redis only (own state dirs).
  for (const how of ['SENTINEL FAILOVER', 'SIGKILL of the master'] as const) {
    it(`Sentinel failover mid-run: ${how}`, async () => {
      const items = 600;
      const faults: FaultSettings = { seed: 13, latencyMs: 60, lostResponseRate: 0.02 };
      const s = await chaosSandbox(faults);
      const dir = tempDir('chaos');
      const d = await startTestSentinels(path.join(dir, 'sentinel'));
      stops.push(() => d.stop());
      const manifest = writeImportManifest(dir, items, { size: 2048 });
      const t0 = Date.now();
      const before = await d.masterPort();
      const fleet = new WorkerFleet(s, dir, () => d.url);
      const importer = startCli(['import', manifest, '--workers', '0'], cliEnv(s, dir, d.url, 'import'));
      let code: number;
      let after = before;
      let atFailover = 0;
      let waited = 0;
      try {
        await fleet.start('a', 4);
        await fleet.start('b', 4);
        await waitFor(() => s.documents().length >= items * 0.2, 120_000, '20 % stored');
        atFailover = s.documents().length;
        if (how === 'SENTINEL FAILOVER') await orderFailover(d);
        else await d.master.stop('SIGKILL');
        after = await waitForNewMaster(d, before);
        code = await exitOf(importer);
        waited = fleet.workers.filter((w) => w.output().stderr.includes('uploads wait for them')).length;
      } finally {
        fleet.killAll();
        importer.child.kill('SIGKILL');
      }
      const v = verify(s, path.join(dir, 'report'), items, { manifest });
      record({
        scenario: `Sentinel (master, 1 replica, 3 sentinels): ${how} at 20 %; 2 \`idsync worker\` × C 4 with own state dirs, import --workers 0`,
        faults: describeFaults(faults),
        items,
        ...v,
        seconds: (Date.now() - t0) / 1000,
        requests: sandboxAnswers(s),
        notes: `${atFailover} stored at the failover; master moved from port ${before} to ${after}; ${waited} of 2 workers held uploads while no replica confirmed; import exit ${code}; ${tallyText(reportTally(path.join(dir, 'report')))}`,
      });
      expect(after).not.toBe(before);
      expect(code, importer.output().stderr.slice(-3000)).toBe(0);
      assertExactlyOnce(v, items);
    });
  }
});

async function orderFailover(d: TestSentinels): Promise<void> {
  const sentinel = new Redis({ host: '127.0.0.1', port: d.sentinelPorts[0]! });
  try {
    await sentinel.call('SENTINEL', 'FAILOVER', 'mymaster');
  } finally {
    sentinel.disconnect();
  }
}

/** The port of the master once the sentinels have moved it off `before`. */
async function waitForNewMaster(d: TestSentinels, before: number): Promise<number> {
  let port = before;
  for (let i = 0; i < 600 && port === before; i++) {
    port = await d.masterPort().catch(() => before);
    await sleep(100);
  }
  return port;
}
