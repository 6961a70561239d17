import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ApiStore } from '../../src/store/api-store.ts';
import { RESULTS_PER_CALL } from '../../src/store/run-store.ts';
import { rowCommands } from '../../src/store/row-scripts.ts';
import { documentId } from '../../src/store/stored-documents.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

/** A store of its own (unique key prefix) over the given connection. */
function store(client: Redis = redis, lockTtlMs = 5_000): ApiStore {
  return new ApiStore(client, { apiUrl: 'https://api.example/identities', root: freshKeyPrefix(), lockTtlMs });
}

async function denseRun(s: ApiStore, runId = 'import-test') {
  const run = s.run(runId);
  await run.saveMeta({ runId, command: 'import', apiUrl: s.apiUrl, input: 'm.csv', createdAt: 0, state: 'running', dense: true });
  return run;
}

const doc = (publicId: string, sha256 = SHA_A) => ({ personId: P, publicId, sha256 });

describe('a run\'s results', () => {
  it('keep per-status counts in step, also when rows are done again', async () => {
    const run = await denseRun(store());
    await run.recordAll([
      { row: 1, status: 'succeeded', action: 'uploaded' },
      { row: 2, status: 'failed', action: 'upload', error: 'x' },
      { row: 3, status: 'rejected', action: 'validate', error: 'y' },
    ]);
    expect(await run.counts()).toEqual({ succeeded: 1, skipped: 0, failed: 1, rejected: 1, interrupted: 0 });
    expect(await run.prepareRows([1, 2, 3, 4])).toEqual(['settled', 'redo', 'redo', 'new']);
    expect(await run.counts()).toEqual({ succeeded: 1, skipped: 0, failed: 0, rejected: 0, interrupted: 0 });
    await run.record({ row: 2, status: 'succeeded', action: 'uploaded' });
    // Recorded twice (a job whose reply was lost): the count moves, it does not double.
    await run.record({ row: 2, status: 'succeeded', action: 'uploaded' });
    expect((await run.counts()).succeeded).toBe(2);
  });

  it('once retired by the report keep only their status (3 bits), which is all a rerun needs', async () => {
    const s = store();
    const run = await denseRun(s);
    await run.recordAll([
      { row: 1, status: 'succeeded', action: 'uploaded', sha256: SHA_A },
      { row: 2, status: 'skipped', action: 'in-ledger' },
      { row: 3, status: 'failed', action: 'upload', error: 'x' },
    ]);
    await run.retire([1, 2, 3]);
    expect(await redis.hlen(run.keys.results)).toBe(0);
    expect(await run.getResults([1, 2, 3, 4])).toEqual([
      { row: 1, status: 'succeeded', action: 'done-earlier' },
      { row: 2, status: 'skipped', action: 'done-earlier' },
      { row: 3, status: 'failed', action: 'done-earlier' },
      undefined,
    ]);
    expect(await run.jobStart(1)).toEqual({ prior: { row: 1, status: 'succeeded', action: 'done-earlier' } });
    expect(await run.jobStart(3)).toEqual({});
    expect(await run.prepareRows([1, 2, 3])).toEqual(['settled', 'settled', 'redo']);
    expect(await run.counts()).toEqual({ succeeded: 1, skipped: 1, failed: 0, rejected: 0, interrupted: 0 });
    // A million rows' statuses: 375 KB.
    expect(await redis.strlen(run.keys.status)).toBeLessThan(10);
  });

  it('a sparse run (watch) never writes status bits', async () => {
    const s = store();
    const run = s.run('watch-x');
    await run.saveMeta({ runId: 'watch-x', command: 'watch', apiUrl: s.apiUrl, input: '/d', createdAt: 0, state: 'running', dense: false });
    await run.record({ row: 2 ** 50, status: 'succeeded', action: 'uploaded' });
    expect(await redis.exists(run.keys.status)).toBe(0);
    expect((await run.getResults([2 ** 50]))[0]).toMatchObject({ status: 'succeeded' });
  });

  it('records the results of concurrent jobs in one Redis call, never more than RESULTS_PER_CALL', async () => {
    const client = redis.duplicate();
    const cmds = rowCommands(client);
    const calls: number[] = [];
    const send = cmds.idsyncRecord.bind(client);
    (client as unknown as { idsyncRecord: unknown }).idsyncRecord = (n: number, ...rest: string[]) => {
      calls.push((rest.length - n) / 7);
      return send(n, ...rest);
    };
    const run = await denseRun(store(client));
    await Promise.all(Array.from({ length: RESULTS_PER_CALL + 5 }, (_, i) => run.record({ row: 10 + i, status: 'succeeded', action: 'uploaded' })));
    expect(calls).toEqual([RESULTS_PER_CALL, 5]);
    expect((await run.counts()).succeeded).toBe(RESULTS_PER_CALL + 5);
    await client.quit();
  });

  it('answers the starts of concurrent jobs in one Redis call, each row its own answer: settled, go, then the run stopped', async () => {
    const client = redis.duplicate();
    const cmds = rowCommands(client);
    const calls: number[] = [];
    const send = cmds.idsyncJobStart.bind(client);
    (client as unknown as { idsyncJobStart: unknown }).idsyncJobStart = (results: string, status: string, meta: string, ...rows: string[]) => {
      calls.push(rows.length);
      return send(results, status, meta, ...rows);
    };
    const run = await denseRun(store(client));
    await run.recordAll([
      { row: 1, status: 'succeeded', action: 'downloaded' },
      { row: 2, status: 'failed', action: 'download', error: 'x' },
    ]);
    await run.retire([1]);
    const rows = [1, 2, 3, ...Array.from({ length: RESULTS_PER_CALL }, (_, i) => 100 + i)];
    const answers = await Promise.all(rows.map((row) => run.jobStart(row)));
    expect(calls).toEqual([RESULTS_PER_CALL, 3]);
    expect(answers.slice(0, 3)).toEqual([{ prior: { row: 1, status: 'succeeded', action: 'done-earlier' } }, {}, {}]);
    expect(answers.slice(3).every((a) => Object.keys(a).length === 0)).toBe(true);
    await run.setFatal('credentials refused', 'E_AUTH');
    expect(await Promise.all([run.jobStart(1), run.jobStart(3)])).toEqual([{ prior: { row: 1, status: 'succeeded', action: 'done-earlier' } }, { fatal: 'credentials refused' }]);
    expect(calls.at(-1)).toBe(2);
    await client.quit();
  });

  it('fails every result of a call that fails, and only the entry that fails in Redis', async () => {
    const s = store();
    const run = await denseRun(s);
    await redis.set(run.keys.results, 'not a hash');
    await expect(run.recordAll([{ row: 9, status: 'rejected', action: 'validate', error: 'x' }])).rejects.toThrow(/WRONGTYPE/);
    await redis.del(run.keys.results);
    const client = redis.duplicate();
    const other = await denseRun(store(client));
    (client as unknown as { idsyncRecord: unknown }).idsyncRecord = () => Promise.reject(new Error('Connection is closed.'));
    const outcomes = await Promise.allSettled([other.record({ row: 1, status: 'succeeded', action: 'uploaded' }), other.record({ row: 2, status: 'succeeded', action: 'uploaded' })]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    await client.quit();
  });
});

describe('document claims', () => {
  it('go to Redis in one call and each gets its own answer: claimed, busy, stored, settled row, stopped run', async () => {
    const client = redis.duplicate();
    const cmds = rowCommands(client);
    const calls: number[] = [];
    const send = cmds.idsyncClaim.bind(client);
    (client as unknown as { idsyncClaim: unknown }).idsyncClaim = (n: number, ...rest: string[]) => {
      calls.push((rest.length - n) / 5);
      return send(n, ...rest);
    };
    const s = store(client);
    const run = await denseRun(s);
    await s.documents.markStored(P, 'stored', SHA_A);
    await run.record({ row: 4, status: 'succeeded', action: 'uploaded' });
    const stopped = await denseRun(s, 'import-stopped');
    await stopped.setFatal('credentials refused', 'E_AUTH_REFUSED');
    calls.length = 0;
    const states = await Promise.all([
      s.documents.claim(run, 1, doc('a')),
      s.documents.claim(run, 2, doc('a')),
      s.documents.claim(run, 3, doc('stored')),
      s.documents.claim(run, 4, doc('b')),
      s.documents.claim(stopped, 1, doc('c')),
      s.documents.claim(run, 5, doc('d')),
    ]);
    expect(calls).toEqual([6]);
    expect(states.map((c) => c.state)).toEqual(['claimed', 'busy', 'stored', 'prior', 'fatal', 'claimed']);
    expect(states[2]).toEqual({ state: 'stored', contentPrefix: SHA_A.slice(0, 16) });
    expect(states[3]).toMatchObject({ prior: { row: 4, status: 'succeeded' } });
    expect(states[4]).toEqual({ state: 'fatal', fatal: 'credentials refused' });
    for (const c of states) if (c.state === 'claimed') await c.claim.giveBack();
    expect(await client.keys(`${s.keys.tag}:lock:*`)).toEqual([]);
    await client.quit();
  });

  it('mark the document in doubt for every worker until it is committed, given back or left in doubt', async () => {
    const s = store();
    const run = await denseRun(s);
    const first = await s.documents.claim(run, 1, doc('x'));
    if (first.state !== 'claimed') throw new Error('not claimed');
    expect(first.earlierDoubt).toBeUndefined();
    expect(await s.documents.lookup(P, 'x')).toEqual({ state: 'doubt', contentPrefix: SHA_A.slice(0, 16) });
    // Given back (nothing can have been sent): the mark goes.
    await first.claim.giveBack();
    expect(await s.documents.lookup(P, 'x')).toBeUndefined();

    const second = await s.documents.claim(run, 1, doc('x'));
    if (second.state !== 'claimed') throw new Error('not claimed');
    // The send failed ambiguously: the mark stays, and whoever comes next is told.
    await second.claim.leaveInDoubt();
    const third = await s.documents.claim(run, 1, doc('x', SHA_B));
    if (third.state !== 'claimed') throw new Error('not claimed');
    expect(third.earlierDoubt).toBe(SHA_A.slice(0, 16));
    // Giving back the third (say its check failed) restores the earlier doubt, never erases it.
    await third.claim.giveBack();
    expect(await s.documents.lookup(P, 'x')).toEqual({ state: 'doubt', contentPrefix: SHA_A.slice(0, 16) });

    const fourth = await s.documents.claim(run, 1, doc('x'));
    if (fourth.state !== 'claimed') throw new Error('not claimed');
    await run.record({ row: 1, status: 'succeeded', action: 'uploaded-confirmed' }, fourth.claim.commitFor(SHA_A));
    fourth.claim.committed();
    expect(await s.documents.lookup(P, 'x')).toEqual({ state: 'stored', contentPrefix: SHA_A.slice(0, 16) });
    expect(await redis.keys(`${s.keys.tag}:lock:*`)).toEqual([]);
  });

  it('hold the lock until the commit; the fallback records and releases when the commit failed', async () => {
    const s = store();
    const run = await denseRun(s);
    const claimed = await s.documents.claim(run, 1, doc('e'));
    if (claimed.state !== 'claimed') throw new Error('not claimed');
    expect((await s.documents.claim(run, 2, doc('e'))).state).toBe('busy');
    await claimed.claim.markStored(SHA_A);
    expect(await s.documents.lookup(P, 'e')).toEqual({ state: 'stored', contentPrefix: SHA_A.slice(0, 16) });
    expect(await redis.keys(`${s.keys.tag}:lock:*`)).toEqual([]);
  });

  it('a claim that loses its lock says so, so the upload can stop', async () => {
    const s = store(redis, 600);
    const run = await denseRun(s);
    let lost = 0;
    const claimed = await s.documents.claim(run, 1, doc('p'), () => lost++);
    if (claimed.state !== 'claimed') throw new Error('not claimed');
    await new Promise((r) => setTimeout(r, 700)); // renewed meanwhile: still held
    expect(lost).toBe(0);
    expect((await s.documents.claim(run, 2, doc('p'))).state).toBe('busy');
    await redis.del(s.keys.lock(documentId(P, 'p').hex)); // gone (expired while Redis was unreachable, say)
    await new Promise((r) => setTimeout(r, 400));
    expect(lost).toBeGreaterThan(0);
    await claimed.claim.giveBack();
  });

  it('one failing entry in a batch fails only its own claim', async () => {
    const s = store();
    const run = await denseRun(s);
    // A key of the wrong type makes an entry fail in Redis (WRONGTYPE), as memory exhaustion would.
    await redis.set(s.keys.storedBucket(documentId(P, 'bad').bucket), 'not a hash');
    const claims = await Promise.allSettled([s.documents.claim(run, 1, doc('ok')), s.documents.claim(run, 2, doc('bad')), s.documents.claim(run, 3, doc('ok2'))]);
    expect(claims.map((c) => (c.status === 'fulfilled' ? c.value.state : 'rejected'))).toEqual(['claimed', 'rejected', 'claimed']);
    expect(String((claims[1] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    for (const c of claims) if (c.status === 'fulfilled' && c.value.state === 'claimed') await c.value.claim.giveBack();
  });

  it('keep a stored document in ~20 bytes of a compact bucket hash', async () => {
    const s = store();
    for (let i = 0; i < 50; i++) await s.documents.markStored(P, `doc-${i}`, SHA_A);
    const buckets = await redis.keys(`${s.keys.tag}:stored:*`);
    expect(buckets.length).toBeGreaterThan(40);
    expect(await redis.call('OBJECT', 'ENCODING', buckets[0]!)).toMatch(/listpack|ziplist/);
    const id = documentId(P, 'doc-1');
    expect((await redis.hgetBuffer(s.keys.storedBucket(id.bucket), id.field))!.length).toBe(9);
  });
});

describe('scripts on an auto-pipelined connection', () => {
  it('are defined before the first command, so a script issued beside other commands in one tick is answered', async () => {
    const { openRedis } = await import('../../src/store/redis/connection.ts');
    const { silentLogger } = await import('../../src/log.ts');
    const { tempDir } = await import('../helpers/fixtures.ts');
    const handle = await openRedis({ redisUrl: inject('redisUrl'), stateDir: tempDir(), log: silentLogger() });
    const client = handle.connect('test', { autoPipelining: true });
    try {
      const run = await denseRun(store(client));
      // A plain command opens this tick's auto-pipeline first; the script joins it.
      const both = Promise.all([client.get('some-key'), run.record({ row: 1, status: 'succeeded', action: 'uploaded' })]);
      const answered = await Promise.race([both.then(() => 'answered'), new Promise((r) => setTimeout(() => r('no answer'), 5_000))]);
      expect(answered).toBe('answered');
    } finally {
      await handle.close();
    }
  });
});

describe('export outputs', () => {
  it('belong to the first row that names them; a document whose extension comes later claims its stem', async () => {
    const run = await denseRun(store());
    const taken = await run.claimOutputs([
      { row: 1, output: 'enrollment/a.jpg', stemOnly: false },
      { row: 2, output: 'enrollment/a.jpg', stemOnly: false },
      { row: 3, output: 'documents/P/D1', stemOnly: true },
      { row: 4, output: 'documents/P/D1.pdf', stemOnly: false },
      { row: 5, output: 'documents/P/D2.pdf', stemOnly: false },
      { row: 6, output: 'documents/P/D2', stemOnly: true },
    ]);
    expect([...taken.entries()]).toEqual([
      [2, 1],
      [4, 3],
      [6, 5],
    ]);
    // The same rows again (a rerun): each still owns its own.
    expect((await run.claimOutputs([{ row: 1, output: 'enrollment/a.jpg', stemOnly: false }, { row: 3, output: 'documents/P/D1', stemOnly: true }])).size).toBe(0);
  });
});
