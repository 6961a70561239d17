import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, realpathSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UnrecoverableError, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Secret } from '../../src/config/secret.ts';
import { JobSigner, type JobEnvelope } from '../../src/engine/job-signing.ts';
import { createProcessor } from '../../src/engine/processor.ts';
import { identityOf } from '../../src/folder-handle.ts';
import { silentLogger } from '../../src/log.ts';
import { systemClock } from '../../src/pacing/clock.ts';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import type { UploadInput } from '../../src/api/types.ts';
import type { JobContext } from '../../jobs/job-kind.ts';
import type { UploadPayload } from '../../jobs/upload.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

const PERSON = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const API_URL = 'https://api.example/identities';
const signer = new JobSigner(new Secret('pw'), API_URL);
const RUN = 'watch-test';
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** What the API client was asked to send: the bytes it read from the path it was given, at the time it read them. */
interface Sent {
  filePath: string;
  fileName?: string;
  contentType?: string;
  bytes: Buffer;
}

async function context(beforeSend?: () => void) {
  const stateDir = tempDir();
  const store = new ApiStore(redis, { apiUrl: API_URL, root: freshKeyPrefix(), lockTtlMs: 5_000 });
  await store.run(RUN).saveMeta({ runId: RUN, command: 'watch', apiUrl: API_URL, input: 'drop', createdAt: 0, state: 'running', dense: false });
  const sent: Sent[] = [];
  const client = {
    documentExists: async () => false,
    uploadDocument: async (input: UploadInput) => {
      beforeSend?.();
      const bytes = input.data ?? readFileSync(input.filePath);
      sent.push({ filePath: input.filePath, ...(input.fileName ? { fileName: input.fileName } : {}), ...(input.contentType ? { contentType: input.contentType } : {}), bytes });
      return { bytes: bytes.length };
    },
  };
  const ctx: JobContext = { client: client as never, store, ledger: await Ledger.open(stateDir, API_URL), log: silentLogger(), clock: systemClock, runs: {} as never };
  return { ctx, store, sent };
}

function signedJob(payload: UploadPayload, id = 'r1'): Job<JobEnvelope> {
  return { id, name: 'upload', queueName: RUN, data: { p: payload, m: signer.sign(RUN, id, 'upload', payload) }, attemptsMade: 0, stalledCounter: 0, opts: {}, async updateData() {}, async moveToDelayed() {} } as never;
}

/** `drop/<person>/<name>` with `content`, and the payload the watch queues for it (identities and sha256 as taken). */
function dropped(name: string, content: string | Buffer) {
  const root = realpathSync(tempDir('upload-drop'));
  const drop = path.join(root, 'drop');
  const outside = path.join(root, 'private');
  mkdirSync(path.join(drop, PERSON), { recursive: true });
  mkdirSync(outside);
  const file = path.join(drop, PERSON, name);
  writeFileSync(file, content);
  const payload: UploadPayload = {
    item: { personId: PERSON, file, name: 'Doc' },
    checkExisting: false,
    drop: { root: drop, levels: [PERSON], name, id: identityOf(lstatSync(file, { bigint: true })), folderId: identityOf(lstatSync(path.dirname(file), { bigint: true })), sha256: sha256(content) },
  };
  /** The person folder renamed away and replaced by a link to a private folder holding a file of the same name. */
  const swapForLink = (secret = 'PRIVATE KEY') => {
    writeFileSync(path.join(outside, name), secret);
    renameSync(path.join(drop, PERSON), path.join(drop, 'elsewhere'));
    symlinkSync(outside, path.join(drop, PERSON));
  };
  return { drop, outside, file, payload, swapForLink };
}

async function refusal(ctx: JobContext, store: ApiStore, payload: UploadPayload) {
  const err = await createProcessor(ctx, { signer, attempts: 3, rateLimit: async () => undefined })(signedJob(payload)).catch((e: unknown) => e);
  const [result] = await store.run(RUN).getResults([1]);
  return { err, result };
}

describe('the upload of a watched folder\'s file', () => {
  it('sends the file it was given, by its descriptor, with its own name and type, even when its folder is swapped mid-send', async () => {
    const d = dropped('scan.txt', 'scanned text');
    const { ctx, store, sent } = await context(() => d.swapForLink());
    const result = await createProcessor(ctx, { signer, attempts: 3, rateLimit: async () => undefined })(signedJob(d.payload));
    expect(result).toMatchObject({ status: 'succeeded', sha256: sha256('scanned text') });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.bytes.toString()).toBe('scanned text');
    expect(sent[0]).toMatchObject({ fileName: 'scan.txt', contentType: 'text/plain' });
    expect(sent[0]!.filePath).toMatch(/^\/proc\/self\/fd\/\d+$/);
    expect(await store.run(RUN).getResults([1])).toEqual([expect.objectContaining({ file: d.file })]);
    await ctx.ledger.close();
  });

  it('a large file (streamed from disk) is read through its descriptor too: the private file behind a swapped folder is never read', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    const d = dropped('big.bin', big);
    const { ctx, sent } = await context(() => d.swapForLink());
    await createProcessor(ctx, { signer, attempts: 3, rateLimit: async () => undefined })(signedJob(d.payload));
    expect(sent[0]!.bytes.equals(big)).toBe(true);
    await ctx.ledger.close();
  });

  it('refuses for good, sending nothing, when the folder is a link, another folder, another file, or other content', async () => {
    const cases: Array<[string, (d: ReturnType<typeof dropped>) => void, RegExp]> = [
      ['folder swapped for a link', (d) => d.swapForLink(), new RegExp(`${PERSON} in .* is a symbolic link`)],
      [
        'folder replaced by another real folder',
        (d) => {
          renameSync(path.join(d.drop, PERSON), path.join(d.drop, 'elsewhere'));
          mkdirSync(path.join(d.drop, PERSON));
          writeFileSync(d.file, 'doc');
        },
        /folder .* was replaced since doc.pdf was seen/,
      ],
      [
        'file replaced by another',
        (d) => {
          renameSync(d.file, `${d.file}.old`);
          writeFileSync(d.file, 'doc');
        },
        /doc\.pdf was replaced since it was seen/,
      ],
      ['file rewritten in place', (d) => writeFileSync(d.file, 'other'), /changed since it was taken \(sha256 .*\); not sent/],
      [
        'file swapped for a link',
        (d) => {
          writeFileSync(path.join(d.outside, 'secret'), 'doc');
          renameSync(d.file, `${d.file}.old`);
          symlinkSync(path.join(d.outside, 'secret'), d.file);
        },
        /doc\.pdf in .* is a symbolic link/,
      ],
    ];
    for (const [what, change, message] of cases) {
      const d = dropped('doc.pdf', 'doc');
      const { ctx, store, sent } = await context();
      change(d);
      const { err, result } = await refusal(ctx, store, d.payload);
      expect(err, what).toBeInstanceOf(UnrecoverableError);
      expect(result, what).toMatchObject({ status: 'failed', errorCode: 'E_UNSAFE_PATH', error: expect.stringMatching(message), attempts: 1 });
      expect(sent, what).toEqual([]);
      await ctx.ledger.close();
    }
  });
});
