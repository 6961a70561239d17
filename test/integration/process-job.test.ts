import { createHash } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { UnrecoverableError, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createProcessor, failedResult } from '../../jobs/process-job.ts';
import type { JobContext, JobData } from '../../jobs/job-types.ts';
import { silentLogger } from '../../src/log.ts';
import { ResultNotRecordedError } from '../../src/errors.ts';
import { classify } from '../../src/api/classify.ts';
import { systemClock } from '../../src/pacing/clock.ts';
import { DocumentLocks, StoredDocuments } from '../../src/queue/document-lock.ts';
import { RunStore } from '../../src/queue/run-store.ts';
import { Ledger } from '../../src/state/ledger.ts';
import { tempDir, testQueueName } from '../helpers/fixtures.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

const PERSON = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';

/** A job context whose API client fails the test if anything reaches it. */
async function context(): Promise<{ ctx: JobContext; api: string; calls: string[]; stateDir: string; apiUrl: string }> {
  const api = testQueueName('api');
  const stateDir = tempDir();
  const apiUrl = `https://${api}.example`;
  const calls: string[] = [];
  const client = new Proxy({}, { get: (_t, name) => () => { calls.push(String(name)); throw new Error(`the API was called: ${String(name)}`); } });
  const ctx: JobContext = {
    client: client as never,
    ledger: await Ledger.open(stateDir, apiUrl),
    locks: new DocumentLocks(redis, api),
    stored: new StoredDocuments(redis, api),
    run: (runId) => new RunStore(redis, runId),
    log: silentLogger(),
    redis,
    clock: systemClock,
  };
  return { ctx, api, calls, stateDir, apiUrl };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function fakeJob(data: JobData): Job<JobData> {
  return { id: 'job-1', data, attemptsMade: 0, stalledCounter: 0, opts: {}, updateData: async () => {}, moveToDelayed: async () => {} } as unknown as Job<JobData>;
}

function uploadJob(runId: string, file: string): Job<JobData> {
  return fakeJob({ kind: 'upload', runId, row: 1, checkExisting: false, item: { personId: PERSON, file, name: 'Doc', publicId: '16fd2706-8baf-433b-82eb-8c7fada847da' } as never });
}

describe('what a job asks before it starts', () => {
  it('an upload whose run stopped fails for good without a request, and leaves no lock behind', async () => {
    const { ctx, api, calls } = await context();
    const runId = testQueueName('run');
    await ctx.run(runId).saveMeta({ runId, command: 'import', apiUrl: 'x', manifest: 'm', manifestSha256: 's', createdAt: 0, fatal: 'credentials refused' });
    const file = path.join(tempDir(), 'a.bin');
    writeFileSync(file, 'content');
    const process = createProcessor(ctx, { attempts: 3, queue: () => undefined as never });
    const err = await process(uploadJob(runId, file)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toBe('run stopped: credentials refused');
    expect(calls).toEqual([]);
    expect(await redis.keys(`idsync:lock:${api}:*`)).toEqual([]);
    await ctx.ledger.close();
  });

  it('an upload whose row already has a final result returns it, even when its file has gone since', async () => {
    const { ctx, calls } = await context();
    const runId = testQueueName('run');
    const prior = { row: 1, status: 'succeeded' as const, action: 'uploaded', documentId: 'd', attempts: 1 };
    await ctx.run(runId).setResult(prior);
    const file = path.join(tempDir(), 'b.bin');
    writeFileSync(file, 'content');
    const process = createProcessor(ctx, { attempts: 3, queue: () => undefined as never });
    expect(await process(uploadJob(runId, file))).toEqual(prior);
    rmSync(file);
    expect(await process(uploadJob(runId, file))).toEqual(prior);
    expect(calls).toEqual([]);
    await ctx.ledger.close();
  });

  it('a failed earlier result does not stop the row from being tried again', async () => {
    const { ctx, calls } = await context();
    const runId = testQueueName('run');
    await ctx.run(runId).setResult({ row: 1, status: 'failed', action: 'upload', error: 'x' });
    const file = path.join(tempDir(), 'c.bin');
    writeFileSync(file, 'content');
    const process = createProcessor(ctx, { attempts: 1, queue: () => undefined as never });
    await process(uploadJob(runId, file)).catch(() => undefined);
    expect(calls).toContain('uploadDocument');
    await ctx.ledger.close();
  });

  it('a failed earlier result whose text JSON-decoders refuse (half an emoji) is still tried again', async () => {
    const { ctx, calls } = await context();
    const runId = testQueueName('run');
    const job = uploadJob(runId, path.join(tempDir(), 'e.bin'));
    writeFileSync((job.data as { item: { file: string } }).item.file, 'content');
    // Written the way an old version cut error texts: a lone surrogate, which Redis's cjson rejects.
    await redis.hset(`idsync:run:${runId}:results`, '1', `{"row":1,"status":"failed","action":"upload","error":"${'x'.repeat(10)}\\ud83d"}`);
    await createProcessor(ctx, { attempts: 1, queue: () => undefined as never })(job).catch(() => undefined);
    expect(calls).toContain('uploadDocument');
    await ctx.ledger.close();
  });

  it('error texts are cut without splitting a character', () => {
    const job = uploadJob('r', 'f') as never;
    const result = failedResult(job, new Error(`${'x'.repeat(299)}😀 tail`), 1);
    expect(result.error).toBe('x'.repeat(299));
    expect(() => JSON.parse(JSON.stringify(result))).not.toThrow();
  });

  it('an upload whose result cannot be recorded is not a failed row: it is retried, with doubt, and the document is kept as stored', async () => {
    const { ctx, api } = await context();
    ctx.client = { uploadDocument: async () => ({ bytes: 7 }) } as never;
    const runId = testQueueName('run');
    const store = new RunStore(redis, runId);
    store.setResult = async () => {
      throw new Error('OOM command not allowed when used memory > maxmemory');
    };
    ctx.run = () => store;
    const file = path.join(tempDir(), 'f.bin');
    writeFileSync(file, 'content');
    const job = uploadJob(runId, file);
    let updated: unknown;
    (job as unknown as { updateData: (d: unknown) => Promise<void> }).updateData = async (d) => {
      updated = d;
    };
    const err = await createProcessor(ctx, { attempts: 3, queue: () => undefined as never })(job).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultNotRecordedError);
    expect(classify(err)).toEqual({ kind: 'retry', ambiguous: true });
    expect(updated).toMatchObject({ ambiguous: true });
    expect(await new StoredDocuments(redis, api).get(`${PERSON}/16fd2706-8baf-433b-82eb-8c7fada847da`)).toMatch(/^[0-9a-f]{64}$/);
    expect(await redis.keys(`idsync:lock:${api}:*`)).toEqual([]);
    await ctx.ledger.close();
  });

  it("an upload in flight stops when the job's signal fires (shutdown) or its document lock is lost", async () => {
    for (const cause of ['job signal', 'lock lost'] as const) {
      const { ctx, api } = await context();
      ctx.locks = new DocumentLocks(redis, api, 750); // renewed every 250 ms
      let sawAbort: unknown;
      let started!: () => void;
      const uploading = new Promise<void>((r) => (started = r));
      ctx.client = {
        uploadDocument: (_input: unknown, signal: AbortSignal) =>
          new Promise((_resolve, reject) => {
            started();
            signal.addEventListener('abort', () => {
              sawAbort = signal.reason;
              reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
            });
          }),
      } as never;
      const runId = testQueueName('run');
      const file = path.join(tempDir(), 'g.bin');
      writeFileSync(file, 'content');
      const shutdown = new AbortController();
      const running = createProcessor(ctx, { attempts: 3, queue: () => undefined as never })(uploadJob(runId, file), 'token', shutdown.signal).catch((e: unknown) => e);
      await uploading;
      if (cause === 'job signal') shutdown.abort(new Error('shutdown'));
      else await redis.del(...(await redis.keys(`idsync:lock:${api}:*`)));
      await running;
      expect(String(sawAbort), cause).toMatch(cause === 'job signal' ? /shutdown/ : /lost the lock/);
      await ctx.ledger.close();
    }
  });

  it("writes the ledger's start while the claim is under way, and takes it back when the claim is not granted", async () => {
    const { ctx, api } = await context();
    const runId = testQueueName('run');
    const file = path.join(tempDir(), 'h.bin');
    writeFileSync(file, 'content');
    const publicId = '16fd2706-8baf-433b-82eb-8c7fada847da';
    const docKey = `${PERSON}/${publicId}`;
    // Another worker holds the document: this attempt is put off (DocumentBusy → delayed).
    const other = await new DocumentLocks(redis, api).claim(docKey, new StoredDocuments(redis, api));
    if (other.state !== 'claimed') throw new Error('not claimed');
    const job = uploadJob(runId, file);
    let delayed = false;
    (job as unknown as { moveToDelayed: () => Promise<void> }).moveToDelayed = async () => {
      delayed = true;
    };
    const calls: string[] = [];
    ctx.client = {
      documentExists: async () => (calls.push('exists'), false),
      uploadDocument: async () => (calls.push('upload'), { bytes: 7 }),
    } as never;
    let starts = 0;
    const start = ctx.ledger.start.bind(ctx.ledger);
    ctx.ledger.start = (...args: Parameters<typeof start>) => (starts++, start(...args));
    const process = createProcessor(ctx, { attempts: 3, queue: () => undefined as never });
    await process(job, 'token').catch(() => undefined);
    expect(delayed).toBe(true);
    expect(starts).toBe(1); // written before the claim's answer came
    expect(calls).toEqual([]);
    // Nothing was sent: the start is taken back, so no doubt is left behind.
    expect(await ctx.ledger.state(PERSON, publicId)).toBeUndefined();
    await other.lock.release();
    await process(job, 'token');
    expect(calls).toEqual(['upload']);
    expect(await ctx.ledger.state(PERSON, publicId)).toBe('stored');
    await ctx.ledger.close();
  });

  it('a document stored with other content is a conflict, and leaves no start behind that would later read as "exists"', async () => {
    const { ctx, api } = await context();
    const publicId = '16fd2706-8baf-433b-82eb-8c7fada847da';
    await redis.hset(new StoredDocuments(redis, api).key, `${PERSON}/${publicId}`, 'f'.repeat(64));
    const file = path.join(tempDir(), 'j.bin');
    writeFileSync(file, 'content');
    const err = await createProcessor(ctx, { attempts: 3, queue: () => undefined as never })(uploadJob(testQueueName('run'), file), 'token').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(String((err as Error).message)).toMatch(/conflict|other content|different/i);
    expect(await ctx.ledger.state(PERSON, publicId)).toBeUndefined();
    await ctx.ledger.close();
  });

  it('a start another process wrote while the claim was under way is doubt, not taken for its own', async () => {
    const { ctx, stateDir, apiUrl } = await context();
    const runId = testQueueName('run');
    const file = path.join(tempDir(), 'i.bin');
    writeFileSync(file, 'content');
    const calls: string[] = [];
    ctx.client = {
      documentExists: async () => (calls.push('exists'), false),
      uploadDocument: async () => (calls.push('upload'), { bytes: 7 }),
    } as never;
    const claim = ctx.locks.claim.bind(ctx.locks);
    ctx.locks.claim = async (...args: Parameters<typeof claim>) => {
      const granted = await claim(...args);
      // Meanwhile another idsync process on this machine (same ledger file) started the document.
      const neighbour = await Ledger.open(stateDir, apiUrl);
      await neighbour.start(PERSON, '16fd2706-8baf-433b-82eb-8c7fada847da', sha256('content'), 'their-attempt');
      await neighbour.close();
      return granted;
    };
    await createProcessor(ctx, { attempts: 3, queue: () => undefined as never })(uploadJob(runId, file), 'token');
    expect(calls).toEqual(['exists', 'upload']);
    await ctx.ledger.close();
  });

  it('other job kinds ask it on their own', async () => {
    const { ctx, calls } = await context();
    const runId = testQueueName('run');
    await ctx.run(runId).saveMeta({ runId, command: 'export', apiUrl: 'x', manifest: 'm', manifestSha256: 's', createdAt: 0, fatal: 'certificate' });
    const process = createProcessor(ctx, { attempts: 3, queue: () => undefined as never });
    const job = fakeJob({ kind: 'download', runId, row: 1, outDir: tempDir(), item: { type: 'enrollmentPhoto', faceId: 'f', output: 'o.jpg' } as never });
    await expect(process(job)).rejects.toThrow('run stopped: certificate');
    expect(calls).toEqual([]);
    await ctx.ledger.close();
  });
});
