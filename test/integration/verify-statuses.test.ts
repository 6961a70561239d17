import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ApiStore } from '../../src/store/api-store.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

async function verifyRun() {
  const s = new ApiStore(redis, { apiUrl: 'https://api.example/identities', root: freshKeyPrefix(), lockTtlMs: 5_000 });
  const run = s.run('verify-test');
  await run.saveMeta({ runId: 'verify-test', command: 'verify', apiUrl: s.apiUrl, input: 'm.csv', createdAt: 0, state: 'running', dense: true });
  return run;
}

describe("verify's statuses in a run's store", () => {
  it('are counted, survive retirement as status codes 5-7, and are settled (a job run again returns them)', async () => {
    const run = await verifyRun();
    await run.recordAll([
      { row: 1, status: 'verified', action: 'server', sha256: 'a'.repeat(64) },
      { row: 2, status: 'mismatch', action: 'server', error: 'differs' },
      { row: 3, status: 'missing', action: 'server', error: '404' },
      { row: 4, status: 'failed', action: 'verify', error: 'network' },
    ]);
    expect(await run.counts()).toEqual({ succeeded: 0, skipped: 0, failed: 1, rejected: 0, verified: 1, mismatch: 1, missing: 1, interrupted: 0 });
    expect((await run.jobStart(2)).prior?.status).toBe('mismatch');

    await run.retire([1, 2, 3, 4]);
    expect(await redis.hlen(run.keys.results)).toBe(0);
    expect((await run.getResults([1, 2, 3, 4])).map((r) => r?.status)).toEqual(['verified', 'mismatch', 'missing', 'failed']);
    expect(await run.jobStart(3)).toEqual({ prior: { row: 3, status: 'missing', action: 'done-earlier' } });
    expect(await run.jobStart(4)).toEqual({});
    // A row found missing is a finding, not a failure: only the failed row would be done again.
    expect(await run.prepareRows([1, 2, 3, 4])).toEqual(['settled', 'settled', 'settled', 'redo']);
    expect(await run.counts()).toEqual({ succeeded: 0, skipped: 0, failed: 0, rejected: 0, verified: 1, mismatch: 1, missing: 1, interrupted: 0 });
  });
});
