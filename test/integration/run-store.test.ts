import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { RunStore } from '../../src/queue/run-store.ts';
import { createProgress } from '../../src/report/progress.ts';
import { testQueueName } from '../helpers/fixtures.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

describe('RunStore', () => {
  it('keeps per-status counts in step with results, also when rows are redone', async () => {
    const runs = new RunStore(redis, testQueueName('run'));
    await runs.setResults([
      { row: 1, status: 'succeeded', action: 'uploaded' },
      { row: 2, status: 'failed', action: 'upload', error: 'x' },
      { row: 3, status: 'rejected', action: 'validate', error: 'y' },
    ]);
    expect(await runs.countResults()).toBe(3);
    expect(await runs.counts()).toEqual({ succeeded: 1, failed: 1, rejected: 1 });
    const [, failed, rejected] = await runs.getResults([1, 2, 3]);
    await runs.deleteResults([failed!, rejected!]);
    expect(await runs.countResults()).toBe(1);
    expect(await runs.counts()).toMatchObject({ succeeded: 1, failed: 0, rejected: 0 });
    await runs.setResult({ row: 2, status: 'succeeded', action: 'uploaded' });
    expect((await runs.counts()).succeeded).toBe(2);
  });
});

describe('progress without a terminal', () => {
  it('logs a line at most every interval, with rate and ETA', () => {
    let t = 0;
    const lines: Array<Record<string, unknown>> = [];
    const log = { info: (o: Record<string, unknown>) => lines.push(o) } as never;
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 5000, now: () => t });
    t = 5000;
    p.update({ done: 50, failed: 1, total: 100 });
    t = 6000;
    p.update({ done: 60, failed: 1, total: 100 });
    t = 10_000;
    p.update({ done: 100, failed: 2, total: 100 });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ done: 50, failed: 1, total: 100, itemsPerSecond: 10, etaSeconds: 5 });
  });

  it('shows the concurrency limit and the over-capacity answers when given (--concurrency auto)', () => {
    const lines: Array<[Record<string, unknown>, string]> = [];
    const log = { info: (o: Record<string, unknown>, msg: string) => lines.push([o, msg]) } as never;
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 0, now: () => 1000 });
    p.update({ done: 5, failed: 0, total: 10, concurrency: 12, overloaded: 3 });
    p.update({ done: 6, failed: 0, total: 10 });
    expect(lines[0]![0]).toMatchObject({ concurrency: 12, overCapacity: 3 });
    expect(lines[0]![1]).toBe('import: 5/10 done | C 12, 3 over capacity');
    expect(lines[1]![0]).not.toHaveProperty('concurrency');
    expect(lines[1]![1]).toBe('import: 6/10 done');
  });
});

describe('queue rate limit', () => {
  it('--rate sets the global limit; a command without it keeps the limit and says so', async () => {
    const { Queue } = await import('bullmq');
    const { applyQueueRateLimit } = await import('../../src/queue/worker-host.ts');
    const queue = new Queue(testQueueName(), { connection: redis.duplicate(), prefix: 'idsync-test' });
    const warnings: string[] = [];
    const log = { warn: (_o: unknown, msg: string) => warnings.push(msg) } as never;
    await applyQueueRateLimit(queue, undefined, log);
    expect(warnings).toEqual([]);
    await applyQueueRateLimit(queue, 7, log);
    expect(await queue.getGlobalRateLimit()).toEqual({ max: 7, duration: 1000 });
    await applyQueueRateLimit(queue, undefined, log);
    expect(warnings[0]).toMatch(/keeps a rate limit of 7 jobs per 1000 ms .* pass --rate N to change it/);
    await queue.obliterate({ force: true });
    await queue.close();
  });
});

describe('document locks', () => {
  it('a claim that loses its lock says so, so the upload can stop', async () => {
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const api = testQueueName('api');
    const locks = new DocumentLocks(redis, api, 600);
    const stored = new StoredDocuments(redis, api);
    let lost = 0;
    const claim = await locks.claim('p/d', stored, () => lost++);
    expect(claim.state).toBe('claimed');
    expect((await locks.claim('p/d', stored)).state).toBe('busy');
    await new Promise((r) => setTimeout(r, 700)); // renewed meanwhile: still held
    expect(lost).toBe(0);
    expect((await locks.claim('p/d', stored)).state).toBe('busy');
    const keys = await redis.keys(`idsync:lock:${api}:*`);
    await redis.del(...keys); // gone (expired while Redis was unreachable, say)
    await new Promise((r) => setTimeout(r, 400));
    expect(lost).toBeGreaterThan(0);
    if (claim.state === 'claimed') await claim.lock.release();
  });
});

describe('claims made together', () => {
  it('go to Redis in one call and each gets its own answer: claimed, busy, stored, prior result, stopped run', async () => {
    const { DocumentLocks, StoredDocuments, lockCommands } = await import('../../src/queue/document-lock.ts');
    const client = redis.duplicate();
    lockCommands(client);
    const calls: number[] = [];
    const send = (client as unknown as { idsyncDocClaim: (...a: unknown[]) => Promise<string[]> }).idsyncDocClaim.bind(client);
    (client as unknown as { idsyncDocClaim: unknown }).idsyncDocClaim = (n: number, ...rest: string[]) => {
      calls.push((rest.length - n) / 5);
      return send(n, ...rest);
    };
    const api = testQueueName('api');
    const locks = new DocumentLocks(client, api, 5_000);
    const stored = new StoredDocuments(client, api);
    await client.hset(stored.key, 'p/stored', 'sha-s');
    const done = new RunStore(client, testQueueName('run'));
    await done.setResults([{ row: 4, status: 'succeeded', action: 'uploaded' }]);
    const stopped = new RunStore(client, testQueueName('run'));
    await stopped.saveMeta({ runId: stopped.runId, command: 'import', apiUrl: api, manifest: 'm', manifestSha256: 'x', createdAt: 0, fatal: 'credentials refused' });
    calls.length = 0;
    const states = await Promise.all([
      locks.claim('p/a', stored),
      locks.claim('p/a', stored),
      locks.claim('p/stored', stored),
      locks.claim('p/b', stored, undefined, { resultsKey: done.resultsKey, metaKey: done.metaKey, row: 4 }),
      locks.claim('p/c', stored, undefined, { resultsKey: stopped.resultsKey, metaKey: stopped.metaKey, row: 1 }),
      locks.claim('p/d', stored, undefined, { resultsKey: done.resultsKey, metaKey: done.metaKey, row: 5 }),
    ]);
    expect(calls).toEqual([6]);
    expect(states.map((c) => c.state)).toEqual(['claimed', 'busy', 'stored', 'prior', 'fatal', 'claimed']);
    expect(states[3]).toMatchObject({ prior: { row: 4, status: 'succeeded' } });
    expect(states[4]).toEqual({ state: 'fatal', fatal: 'credentials refused' });
    for (const c of states) if (c.state === 'claimed') await c.lock.release();
    expect(await client.keys(`idsync:lock:${api}:*`)).toEqual([]);
    await client.quit();
  });
});

describe('document stored together with the row result', () => {
  it('records the document, releases its lock and records the result in one step; the lock is held until then', async () => {
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const api = testQueueName('api');
    const locks = new DocumentLocks(redis, api, 5_000);
    const stored = new StoredDocuments(redis, api);
    const runs = new RunStore(redis, testQueueName('run'));
    const claim = await locks.claim('p/d', stored);
    if (claim.state !== 'claimed') throw new Error('not claimed');
    const deferred = claim.lock.deferStored('sha-1');
    await claim.lock.release(); // the upload's `finally`: must not let the document go yet
    expect((await locks.claim('p/d', stored)).state).toBe('busy');
    expect(await stored.get('p/d')).toBeUndefined();

    await runs.setResult({ row: 7, status: 'succeeded', action: 'uploaded' }, deferred.commit);
    deferred.settled();
    expect(await stored.get('p/d')).toBe('sha-1');
    expect(await runs.getResult(7)).toMatchObject({ row: 7, status: 'succeeded' });
    expect(await runs.counts()).toEqual({ succeeded: 1 });
    expect(await locks.claim('p/d', stored)).toEqual({ state: 'stored', sha256: 'sha-1' });
    expect(await redis.keys(`idsync:lock:${api}:*`)).toEqual([]);
  });

  it('when the combined step fails, the fallback still records and releases', async () => {
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const api = testQueueName('api');
    const locks = new DocumentLocks(redis, api, 5_000);
    const stored = new StoredDocuments(redis, api);
    const claim = await locks.claim('p/e', stored);
    if (claim.state !== 'claimed') throw new Error('not claimed');
    const deferred = claim.lock.deferStored('sha-2');
    await deferred.fallback();
    expect(await stored.get('p/e')).toBe('sha-2');
    expect(await redis.keys(`idsync:lock:${api}:*`)).toEqual([]);
  });
});

describe('results recorded together', () => {
  it('sends the results of concurrent jobs in one Redis call, with or without a document to commit', async () => {
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const { RESULTS_PER_CALL, runStoreCommands } = await import('../../src/queue/run-store.ts');
    const client = redis.duplicate();
    runStoreCommands(client);
    const api = testQueueName('api');
    const locks = new DocumentLocks(client, api, 5_000);
    const stored = new StoredDocuments(client, api);
    const runs = new RunStore(client, testQueueName('run'));
    const commits = [];
    for (const doc of ['p/a', 'p/b']) {
      const claim = await locks.claim(doc, stored);
      if (claim.state !== 'claimed') throw new Error('not claimed');
      commits.push(claim.lock.deferStored(`sha-${doc}`).commit);
    }
    const calls: number[] = [];
    const send = (client as unknown as { idsyncResults: (...a: unknown[]) => Promise<number> }).idsyncResults.bind(client);
    (client as unknown as { idsyncResults: unknown }).idsyncResults = (n: number, ...rest: string[]) => {
      calls.push((rest.length - n) / 6);
      return send(n, ...rest);
    };
    await Promise.all([
      runs.setResult({ row: 1, status: 'succeeded', action: 'uploaded' }, commits[0]),
      runs.setResult({ row: 2, status: 'failed', action: 'upload', error: 'x' }),
      runs.setResult({ row: 3, status: 'succeeded', action: 'in-ledger' }, commits[1]),
    ]);
    expect(calls).toEqual([3]);
    expect(await stored.get('p/a')).toBe('sha-p/a');
    expect(await stored.get('p/b')).toBe('sha-p/b');
    expect(await client.keys(`idsync:lock:${api}:*`)).toEqual([]);
    expect((await runs.getResults([1, 2, 3])).map((r) => r?.status)).toEqual(['succeeded', 'failed', 'succeeded']);
    expect(await runs.counts()).toEqual({ succeeded: 2, failed: 1 });

    // Never more than RESULTS_PER_CALL in one call.
    calls.length = 0;
    await Promise.all(Array.from({ length: RESULTS_PER_CALL + 5 }, (_, i) => runs.setResult({ row: 10 + i, status: 'succeeded', action: 'uploaded' })));
    expect(calls).toEqual([RESULTS_PER_CALL, 5]);
    expect(await runs.countResults()).toBe(3 + RESULTS_PER_CALL + 5);
    await client.quit();
  });

  it('fails every result of a call that fails', async () => {
    const client = redis.duplicate();
    const runs = new RunStore(client, testQueueName('run'));
    (client as unknown as { idsyncResults: unknown }).idsyncResults = () => Promise.reject(new Error('Connection is closed.'));
    const outcomes = await Promise.allSettled([runs.setResult({ row: 1, status: 'succeeded', action: 'uploaded' }), runs.setResult({ row: 2, status: 'succeeded', action: 'uploaded' })]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    await client.quit();
  });
});

describe('one failing entry in a batch', () => {
  it('fails only its own claim or result; the others take effect and are answered', async () => {
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const api = testQueueName('api');
    const locks = new DocumentLocks(redis, api, 5_000);
    const stored = new StoredDocuments(redis, api);
    // A key of the wrong type makes an entry fail in Redis (WRONGTYPE), as memory exhaustion would.
    const broken = new StoredDocuments(redis, testQueueName('api'));
    await redis.set(broken.key, 'not a hash');
    await redis.hset(`idsync:lock:${api}:p/bad`, 'x', 'y');
    const claims = await Promise.allSettled([locks.claim('p/ok', stored), locks.claim('p/bad', broken), locks.claim('p/ok2', stored)]);
    expect(claims.map((c) => (c.status === 'fulfilled' ? c.value.state : 'rejected'))).toEqual(['claimed', 'rejected', 'claimed']);
    expect(String((claims[1] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);

    const runs = new RunStore(redis, testQueueName('run'));
    const good = claims[0]!.status === 'fulfilled' && claims[0].value.state === 'claimed' ? claims[0].value.lock.deferStored('sha-ok').commit : undefined;
    const bad = { storedKey: stored.key, docKey: 'p/bad', sha256: 'sha-bad', lockKey: `idsync:lock:${api}:p/bad`, token: 't' };
    const results = await Promise.allSettled([
      runs.setResult({ row: 1, status: 'succeeded', action: 'uploaded' }, good),
      runs.setResult({ row: 2, status: 'succeeded', action: 'uploaded' }, bad),
      runs.setResult({ row: 3, status: 'failed', action: 'upload', error: 'x' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((await runs.getResults([1, 2, 3])).map((r) => r?.status)).toEqual(['succeeded', undefined, 'failed']);
    expect(await runs.counts()).toEqual({ succeeded: 1, failed: 1 });
    for (const c of claims) if (c.status === 'fulfilled' && c.value.state === 'claimed') await c.value.lock.release();
    await redis.del(`idsync:lock:${api}:p/bad`, broken.key);

    // setResults (the enqueue's rejected rows) goes through the same script and says so when it fails.
    await redis.set(runs.resultsKey, 'not a hash');
    await expect(runs.setResults([{ row: 9, status: 'rejected', action: 'validate', error: 'x' }])).rejects.toThrow(/WRONGTYPE/);
    await redis.del(runs.resultsKey);
  });
});

describe('scripts on an auto-pipelined connection', () => {
  it('are defined before the first command, so a script issued beside other commands in one tick is answered', async () => {
    const { openRedis } = await import('../../src/queue/connection.ts');
    const { DocumentLocks, StoredDocuments } = await import('../../src/queue/document-lock.ts');
    const { silentLogger } = await import('../../src/log.ts');
    const { tempDir } = await import('../helpers/fixtures.ts');
    const handle = await openRedis({ redisUrl: inject('redisUrl'), stateDir: tempDir(), log: silentLogger() });
    const client = handle.connect('test', { autoPipelining: true });
    try {
      const api = testQueueName('api');
      const claim = await new DocumentLocks(client, api).claim('p/d', new StoredDocuments(client, api));
      if (claim.state !== 'claimed') throw new Error('not claimed');
      const commit = claim.lock.deferStored('sha').commit;
      // A plain command opens this tick's auto-pipeline first; the script joins it.
      const both = Promise.all([client.get('some-key'), new RunStore(client, testQueueName('run')).setResult({ row: 1, status: 'succeeded', action: 'uploaded' }, commit)]);
      const answered = await Promise.race([both.then(() => 'answered'), new Promise((r) => setTimeout(() => r('no answer'), 5_000))]);
      expect(answered).toBe('answered');
    } finally {
      await handle.close();
    }
  });
});

describe('RunStore.anyRowQueued', () => {
  it('sees only this run\'s own jobs for rows without a result', async () => {
    const { Queue } = await import('bullmq');
    const queue = new Queue(testQueueName(), { connection: redis.duplicate(), prefix: 'idsync-test' });
    const runs = new RunStore(redis, testQueueName('run'));
    await queue.add('upload', {}, { jobId: 'another-run-1', delay: 60_000 });
    expect(await runs.anyRowQueued(queue, [1, 2, 3])).toBe(false);
    await queue.add('upload', {}, { jobId: `${runs.runId}-2`, delay: 60_000 });
    expect(await runs.anyRowQueued(queue, [1, 2, 3])).toBe(true);
    await runs.setResult({ row: 2, status: 'succeeded', action: 'uploaded' });
    expect(await runs.anyRowQueued(queue, [1, 2, 3])).toBe(false); // row 2 has its result
    await queue.obliterate({ force: true });
    await queue.close();
  });
});
