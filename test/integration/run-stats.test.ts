import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ApiStore } from '../../src/store/api-store.ts';
import { RUN_TTL_SECONDS } from '../../src/store/keys.ts';
import { MAX_ERROR_CLASSES, TIMELINE_MINUTES } from '../../src/store/run-stats.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

const MIN = 60_000;

async function run(runId = 'import-stats') {
  const store = new ApiStore(redis, { apiUrl: 'https://api.example/identities', root: freshKeyPrefix() });
  const r = store.run(runId);
  await r.saveMeta({ runId, command: 'import', apiUrl: store.apiUrl, input: 'm.csv', createdAt: 0, state: 'running', dense: true });
  return r;
}

/** Notes are written after the fact (never awaited by a job): wait until Redis has them. */
async function settled(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the stats never arrived');
}

describe('a run\'s stats in Redis', () => {
  it('note every recorded result (error classes with their first example row, the timeline) and the processor\'s retries and throttles', async () => {
    const r = await run();
    const t0 = 1_000 * MIN;
    await Promise.all([
      r.record({ row: 1, status: 'succeeded', action: 'uploaded', finishedAt: t0 + 1000 }),
      r.record({ row: 2, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN', httpStatus: 403, error: 'POST … answered 403', personId: 'p1', file: '/scans/a.pdf', attempts: 1, finishedAt: t0 + 2000 }),
      r.record({ row: 3, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN', httpStatus: 403, error: 'another 403', finishedAt: t0 + 3000 }),
    ]);
    await r.recordAll([{ row: 4, status: 'rejected', action: 'validate', errorCode: 'E_ROW_INVALID', error: 'personId is not a GUID', finishedAt: t0 + MIN }]);
    r.stats.noteRetry('E_SERVER', t0 + MIN + 5);
    r.stats.noteRetry('E_SERVER', t0 + MIN + 6);
    r.stats.noteThrottle(t0 + MIN + 7);
    await settled(async () => (await r.stats.read()).throttles === 1 && (await r.stats.read()).classes.length === 3);
    const stats = await r.stats.read();
    expect(stats.retries).toBe(2);
    expect(stats.classes.map((c) => [c.code, c.failed, c.rejected, c.retried])).toEqual([
      ['E_FORBIDDEN', 2, 0, 0],
      ['E_ROW_INVALID', 0, 1, 0],
      ['E_SERVER', 0, 0, 2],
    ]);
    expect(stats.classes[0]!.example).toEqual({ row: 2, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN', httpStatus: 403, error: 'POST … answered 403', personId: 'p1', file: '/scans/a.pdf', attempts: 1, finishedAt: t0 + 2000 });
    // Rejected rows are no work per minute; retries and throttles are.
    expect(await r.stats.timeline()).toEqual([
      { minute: 1000, done: 1, failed: 2, retries: 0, throttles: 0 },
      { minute: 1001, done: 0, failed: 0, retries: 2, throttles: 1 },
    ]);
    expect(await r.stats.timeline(1001, 1001)).toEqual([{ minute: 1001, done: 0, failed: 0, retries: 2, throttles: 1 }]);
    // Both keys expire with the run's others.
    expect(await redis.ttl(r.keys.stats)).toBeGreaterThan(RUN_TTL_SECONDS - 60);
    expect(await redis.ttl(r.keys.timeline)).toBeGreaterThan(RUN_TTL_SECONDS - 60);
  });

  it('start afresh for a new invocation, but keep the timeline', async () => {
    const r = await run();
    await r.record({ row: 1, status: 'failed', action: 'upload', errorCode: 'E_NETWORK', finishedAt: 5 * MIN });
    await settled(async () => (await r.stats.read()).classes.length === 1);
    await r.stats.reset(6 * MIN);
    const stats = await r.stats.read();
    expect(stats).toEqual({ since: 6 * MIN, retries: 0, throttles: 0, classes: [] });
    expect(await r.stats.timeline()).toHaveLength(1);
  });

  it('stay bounded: a day of minutes, and a fixed number of error classes', async () => {
    const r = await run();
    const day = TIMELINE_MINUTES;
    // A day and a bit of minutes, one row each, in batches.
    for (let m = 0; m < day + 30; m += 200) {
      r.stats.noteResults(Array.from({ length: Math.min(200, day + 30 - m) }, (_, i) => ({ row: m + i + 1, status: 'succeeded' as const, action: 'uploaded', finishedAt: (m + i) * MIN })));
      await settled(async () => (await redis.hlen(r.keys.timeline)) > 0 && (await r.stats.timeline()).some((b) => b.minute === Math.min(day + 29, m + 199)));
    }
    const timeline = await r.stats.timeline();
    expect(timeline.length).toBeLessThanOrEqual(day);
    expect(timeline[timeline.length - 1]!.minute).toBe(day + 29);
    expect(timeline[0]!.minute).toBeGreaterThan(29);

    for (let i = 0; i < MAX_ERROR_CLASSES + 5; i++) r.stats.noteRetry(`E_KIND_${i}`, 0);
    await settled(async () => (await r.stats.read()).retries === MAX_ERROR_CLASSES + 5);
    const classes = (await r.stats.read()).classes;
    expect(classes).toHaveLength(MAX_ERROR_CLASSES + 1);
    expect(classes.find((c) => c.code === 'E_OTHER')!.retried).toBe(5);
  });
});
