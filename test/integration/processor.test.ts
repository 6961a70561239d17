import { createHash } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { UnrecoverableError, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { classify } from '../../src/api/classify.ts';
import { Secret } from '../../src/config/secret.ts';
import { JobSigner, type JobEnvelope } from '../../src/engine/job-signing.ts';
import { createProcessor, failedResult } from '../../src/engine/processor.ts';
import { budgetedJob } from '../../src/engine/retry-budget.ts';
import { HttpStatusError, ResultNotRecordedError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { ManualClock, systemClock } from '../../src/pacing/clock.ts';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { documentId } from '../../src/store/stored-documents.ts';
import type { JobContext } from '../../jobs/job-kind.ts';
import { upload } from '../../jobs/upload.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

const PERSON = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const PUBLIC_ID = '16fd2706-8baf-433b-82eb-8c7fada847da';
const API_URL = 'https://api.example/identities';
const signer = new JobSigner(new Secret('pw'), API_URL);
const RUN = 'import-test';

/** A job context whose API client fails the test if anything reaches it. */
async function context(lockTtlMs = 5_000): Promise<{ ctx: JobContext; store: ApiStore; calls: string[]; stateDir: string }> {
  const stateDir = tempDir();
  const calls: string[] = [];
  const client = new Proxy({}, { get: (_t, name) => () => { calls.push(String(name)); throw new Error(`the API was called: ${String(name)}`); } });
  const store = new ApiStore(redis, { apiUrl: API_URL, root: freshKeyPrefix(), lockTtlMs });
  await store.run(RUN).saveMeta({ runId: RUN, command: 'import', apiUrl: API_URL, input: 'm.csv', createdAt: 0, state: 'running', dense: true });
  const ctx: JobContext = { client: client as never, store, ledger: await Ledger.open(stateDir, API_URL), log: silentLogger(), clock: systemClock, runs: {} as never };
  return { ctx, store, calls, stateDir };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A BullMQ job as the processor sees it, signed like the engine signs them. */
function fakeJob(name: string, payload: unknown, extra: Partial<JobEnvelope> = {}, queueName = RUN, id = 'r1'): Job<JobEnvelope> & { updated?: JobEnvelope; delayed: boolean } {
  const job = {
    id,
    name,
    queueName,
    data: { p: payload, m: signer.sign(queueName, id, name, payload), ...extra },
    attemptsMade: 0,
    stalledCounter: 0,
    opts: {},
    delayed: false,
    updated: undefined as JobEnvelope | undefined,
    async updateData(d: JobEnvelope) {
      job.updated = d;
      job.data = d;
    },
    async moveToDelayed() {
      job.delayed = true;
    },
  };
  return job as never;
}

function uploadJob(file: string) {
  return fakeJob('upload', { item: { personId: PERSON, file, name: 'Doc', publicId: PUBLIC_ID }, checkExisting: false });
}

const processorFor = (ctx: JobContext, attempts = 3) => createProcessor(ctx, { signer, attempts, rateLimit: async () => undefined });

describe('signed jobs', () => {
  it('a job that is not signed with the deployment key, or was altered, is refused before anything is read or sent', async () => {
    const { ctx, calls } = await context();
    const file = path.join(tempDir(), 'a.bin');
    writeFileSync(file, 'content');
    const forged = uploadJob('/etc/shadow');
    forged.data.m = 'A'.repeat(32);
    const err = await processorFor(ctx)(forged).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(String((err as Error).message)).toMatch(/not signed with this deployment's key/);
    const altered = uploadJob(file);
    (altered.data.p as { item: { file: string } }).item.file = '/etc/shadow';
    await expect(processorFor(ctx)(altered)).rejects.toThrow(/not signed/);
    // Replayed under another row: the MAC covers the job id.
    const replayed = uploadJob(file);
    (replayed as { id: string }).id = 'r2';
    await expect(processorFor(ctx)(replayed)).rejects.toThrow(/not signed/);
    // Replayed as another kind: the MAC covers the kind too.
    const otherKind = uploadJob(file);
    (otherKind as { name: string }).name = 'verify';
    await expect(processorFor(ctx)(otherKind)).rejects.toThrow(/not signed/);
    expect(calls).toEqual([]);
    await ctx.ledger.close();
  });
});

describe('what a job asks before it starts', () => {
  it('an upload whose run stopped fails for good without a request, and leaves no lock behind', async () => {
    const { ctx, store, calls } = await context();
    await store.run(RUN).setFatal('credentials refused', 'E_AUTH_REFUSED');
    const file = path.join(tempDir(), 'a.bin');
    writeFileSync(file, 'content');
    const err = await processorFor(ctx)(uploadJob(file)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toBe('run stopped: credentials refused');
    expect(calls).toEqual([]);
    expect(await redis.keys(`${store.keys.tag}:lock:*`)).toEqual([]);
    await ctx.ledger.close();
  });

  it('an upload whose row already has a settled result returns it, even when its file has gone since', async () => {
    const { ctx, store, calls } = await context();
    const prior = { row: 1, status: 'succeeded' as const, action: 'uploaded', documentId: 'd', attempts: 1 };
    await store.run(RUN).record(prior);
    const file = path.join(tempDir(), 'b.bin');
    writeFileSync(file, 'content');
    expect(await processorFor(ctx)(uploadJob(file))).toEqual(prior);
    rmSync(file);
    expect(await processorFor(ctx)(uploadJob(file))).toEqual(prior);
    expect(calls).toEqual([]);
    await ctx.ledger.close();
  });

  it('a failed earlier result, even one JSON decoders refuse (half an emoji), does not stop the row from being tried again', async () => {
    const { ctx, store, calls } = await context();
    const file = path.join(tempDir(), 'e.bin');
    writeFileSync(file, 'content');
    // Written the way an old version cut error texts: a lone surrogate, which Redis's cjson rejects.
    await redis.hset(store.run(RUN).keys.results, '1', `{"row":1,"status":"failed","action":"upload","error":"${'x'.repeat(10)}\\ud83d"}`);
    await processorFor(ctx, 1)(uploadJob(file)).catch(() => undefined);
    expect(calls).toContain('uploadDocument');
    await ctx.ledger.close();
  });

  it('other job kinds ask it on their own', async () => {
    const { ctx, store, calls } = await context();
    await store.run(RUN).setFatal('certificate', 'E_TLS');
    const job = fakeJob('download', { outDir: tempDir(), item: { type: 'enrollmentPhoto', faceId: 'f', output: 'o.jpg', explicitOutput: true } });
    await expect(processorFor(ctx)(job)).rejects.toThrow('run stopped: certificate');
    expect(calls).toEqual([]);
    await ctx.ledger.close();
  });
});

describe('failed rows', () => {
  it('error texts are cut without splitting a character', () => {
    const result = failedResult(upload as never, 1, { item: { personId: PERSON, file: 'f' } }, new Error(`${'x'.repeat(299)}😀 tail`), 1, 0);
    expect(result.error).toBe('x'.repeat(299));
    expect(result.error!.length).toBe(299);
    expect(result).toMatchObject({ personId: PERSON, file: 'f', action: 'upload', errorCode: 'E_INTERNAL' });
  });
});

describe('the retry budget (watch)', () => {
  /** An upload job whose every try meets `status`, on a retry budget of a minute (or on --attempts 3 without one). */
  async function failingUpload(status: number, budget: boolean) {
    const { ctx, store } = await context();
    const clock = new ManualClock();
    ctx.clock = clock;
    const tries: number[] = [];
    ctx.client = {
      uploadDocument: async () => {
        tries.push(clock.now());
        throw new HttpStatusError({ method: 'POST', path: '/api/v1/people/fileDocuments/upload', status, requestSent: false });
      },
    } as never;
    const file = path.join(tempDir(), 'budget.bin');
    writeFileSync(file, 'content');
    const terms = budgetedJob({ budgetMs: 60_000, maxDelayMs: 5_000 });
    const job = fakeJob('upload', { item: { personId: PERSON, file, name: 'Doc', publicId: PUBLIC_ID }, checkExisting: false }, budget ? terms.hint : {});
    if (budget) (job as { opts: unknown }).opts = terms.opts;
    const process = processorFor(ctx, 3);
    /** One attempt as BullMQ would make it: the thrown error, and the row's result so far. */
    const attempt = async () => {
      const err = await process(job).catch((e: unknown) => e);
      (job as { attemptsMade: number }).attemptsMade++;
      const [result] = await store.run(RUN).getResults([1]);
      return { err, result };
    };
    return { ctx, clock, tries, job, attempt };
  }

  it('passing failures (503) are retried past --attempts until the budget has gone by since the first failure', async () => {
    const { ctx, clock, tries, job, attempt } = await failingUpload(503, true);
    const first = clock.now();
    for (let i = 0; i < 12; i++) {
      const { err, result } = await attempt();
      expect(err, `try ${i + 1}`).toBeInstanceOf(HttpStatusError); // rethrown: BullMQ backs off and tries again
      expect(result).toBeUndefined();
      clock.advance(4_999); // 12 tries in 59.988 s: still inside the minute
    }
    expect(job.data.f).toBe(first);
    expect(job.opts.attempts).toBeGreaterThan(100_000);
    clock.set(first + 60_000);
    const { err, result } = await attempt();
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(result).toMatchObject({ status: 'failed', httpStatus: 503, attempts: 13, errorCode: 'E_SERVER' });
    expect(tries).toHaveLength(13);
    await ctx.ledger.close();
  });

  it('a permanent failure (403) ends a job on a budget at its first try', async () => {
    const { ctx, tries, attempt } = await failingUpload(403, true);
    const { err, result } = await attempt();
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(result).toMatchObject({ status: 'failed', httpStatus: 403, attempts: 1 });
    expect(tries).toHaveLength(1);
    await ctx.ledger.close();
  });

  it('without a budget (import, export, archive), the attempt count decides as before, however little time went by', async () => {
    const { ctx, tries, attempt } = await failingUpload(503, false);
    expect((await attempt()).err).toBeInstanceOf(HttpStatusError);
    expect((await attempt()).err).toBeInstanceOf(HttpStatusError);
    const { err, result } = await attempt();
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(result).toMatchObject({ status: 'failed', httpStatus: 503, attempts: 3 });
    expect(tries).toHaveLength(3);
    await ctx.ledger.close();
  });
});

describe('the upload commit', () => {
  it('an upload whose result cannot be recorded is not a failed row: it is retried, in doubt, and the document is kept as stored', async () => {
    const { ctx, store } = await context();
    ctx.client = { uploadDocument: async () => ({ bytes: 7 }) } as never;
    const run = store.run(RUN);
    run.record = async () => {
      throw new Error('OOM command not allowed when used memory > maxmemory');
    };
    const file = path.join(tempDir(), 'f.bin');
    writeFileSync(file, 'content');
    const job = uploadJob(file);
    const err = await processorFor(ctx)(job).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultNotRecordedError);
    expect(classify(err)).toEqual({ kind: 'retry', ambiguous: true });
    expect(job.updated).toMatchObject({ d: true });
    expect(await store.documents.lookup(PERSON, PUBLIC_ID)).toEqual({ state: 'stored', contentPrefix: sha256('content').slice(0, 16) });
    expect(await redis.keys(`${store.keys.tag}:lock:*`)).toEqual([]);
    await ctx.ledger.close();
  });

  it("an upload in flight stops when the job's signal fires (shutdown) or its document lock is lost", async () => {
    for (const cause of ['job signal', 'lock lost'] as const) {
      const { ctx, store } = await context(750); // renewed every 250 ms
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
      const file = path.join(tempDir(), 'g.bin');
      writeFileSync(file, 'content');
      const shutdown = new AbortController();
      const running = processorFor(ctx)(uploadJob(file), 'token', shutdown.signal).catch((e: unknown) => e);
      await uploading;
      if (cause === 'job signal') shutdown.abort(new Error('shutdown'));
      else await redis.del(store.keys.lock(documentId(PERSON, PUBLIC_ID).hex));
      await running;
      expect(String(sawAbort), cause).toMatch(cause === 'job signal' ? /shutdown/ : /lost the lock/);
      // It may have reached the server: the doubt mark stays for whoever comes next.
      expect((await store.documents.lookup(PERSON, PUBLIC_ID))?.state, cause).toBe('doubt');
      await ctx.ledger.close();
    }
  });

  it("writes the ledger's start while the claim is under way, and takes it back when the claim is not granted", async () => {
    const { ctx, store } = await context();
    const file = path.join(tempDir(), 'h.bin');
    writeFileSync(file, 'content');
    // Another worker holds the document: this attempt is put off (DocumentBusy → delayed).
    const other = await store.documents.claim(store.run(RUN), 9, { personId: PERSON, publicId: PUBLIC_ID, sha256: sha256('content') });
    if (other.state !== 'claimed') throw new Error('not claimed');
    const job = uploadJob(file);
    const calls: string[] = [];
    ctx.client = {
      documentExists: async () => (calls.push('exists'), false),
      hashDocument: async () => (calls.push('hash'), undefined),
      uploadDocument: async () => (calls.push('upload'), { bytes: 7 }),
    } as never;
    let starts = 0;
    const start = ctx.ledger.start.bind(ctx.ledger);
    ctx.ledger.start = (...args: Parameters<typeof start>) => (starts++, start(...args));
    const process = processorFor(ctx);
    await process(job, 'token').catch(() => undefined);
    expect(job.delayed).toBe(true);
    expect(starts).toBe(1); // written before the claim's answer came
    expect(calls).toEqual([]);
    // Nothing was sent: the start is taken back, so no doubt is left behind here.
    expect(await ctx.ledger.state(PERSON, PUBLIC_ID)).toBeUndefined();
    await other.claim.giveBack();
    await process(job, 'token');
    expect(calls).toEqual(['upload']);
    expect(await ctx.ledger.state(PERSON, PUBLIC_ID)).toBe('stored');
    await ctx.ledger.close();
  });

  it('a document in doubt elsewhere (another worker, state dir or machine) is asked about before sending', async () => {
    const { ctx, store } = await context();
    const file = path.join(tempDir(), 'k.bin');
    writeFileSync(file, 'content');
    // An attempt on another machine may have sent it: its doubt mark is in the shared Redis.
    const elsewhere = await store.documents.claim(store.run(RUN), 5, { personId: PERSON, publicId: PUBLIC_ID, sha256: sha256('content') });
    if (elsewhere.state !== 'claimed') throw new Error('not claimed');
    await elsewhere.claim.leaveInDoubt();
    const calls: string[] = [];
    ctx.client = {
      hashDocument: async () => (calls.push('hash'), { sha256: sha256('content'), bytes: 7 }),
      uploadDocument: async () => (calls.push('upload'), { bytes: 7 }),
    } as never;
    const result = await processorFor(ctx)(uploadJob(file), 'token');
    expect(calls).toEqual(['hash']);
    expect(result).toMatchObject({ status: 'skipped', action: 'exists-on-server' });
    expect((await store.documents.lookup(PERSON, PUBLIC_ID))?.state).toBe('stored');
    await ctx.ledger.close();
  });

  it('an explicit publicId the server holds with other content is a conflict, never a skip', async () => {
    const { ctx, store } = await context();
    const file = path.join(tempDir(), 'm.bin');
    writeFileSync(file, 'content');
    ctx.client = { hashDocument: async () => ({ sha256: 'f'.repeat(64), bytes: 3 }), uploadDocument: async () => ({ bytes: 7 }) } as never;
    const job = fakeJob('upload', { item: { personId: PERSON, file, name: 'Doc', publicId: PUBLIC_ID }, checkExisting: true });
    const err = await processorFor(ctx)(job, 'token').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(String((err as Error).message)).toMatch(/already stored with other content/);
    expect(await store.run(RUN).getResults([1])).toEqual([expect.objectContaining({ status: 'failed', errorCode: 'E_CONFLICT' })]);
    expect(await store.documents.lookup(PERSON, PUBLIC_ID)).toBeUndefined();
    await ctx.ledger.close();
  });

  it('a document stored with other content is a conflict, and leaves no start behind that would later read as "exists"', async () => {
    const { ctx, store } = await context();
    await store.documents.markStored(PERSON, PUBLIC_ID, 'f'.repeat(64));
    const file = path.join(tempDir(), 'j.bin');
    writeFileSync(file, 'content');
    const err = await processorFor(ctx)(uploadJob(file), 'token').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(String((err as Error).message)).toMatch(/other content/i);
    expect(await ctx.ledger.state(PERSON, PUBLIC_ID)).toBeUndefined();
    await ctx.ledger.close();
  });

  it('a start another process wrote while the claim was under way is doubt, not taken for its own', async () => {
    const { ctx, store, stateDir } = await context();
    const file = path.join(tempDir(), 'i.bin');
    writeFileSync(file, 'content');
    const calls: string[] = [];
    ctx.client = {
      hashDocument: async () => (calls.push('hash'), undefined),
      uploadDocument: async () => (calls.push('upload'), { bytes: 7 }),
    } as never;
    const claim = store.documents.claim.bind(store.documents);
    store.documents.claim = async (...args: Parameters<typeof claim>) => {
      const granted = await claim(...args);
      // Meanwhile another idsync process on this machine (same ledger file) started the document.
      const neighbour = await Ledger.open(stateDir, API_URL);
      await neighbour.start(PERSON, PUBLIC_ID, sha256('content'), 'their-attempt');
      await neighbour.close();
      return granted;
    };
    await processorFor(ctx)(uploadJob(file), 'token');
    expect(calls).toEqual(['hash', 'upload']);
    await ctx.ledger.close();
  });
});
