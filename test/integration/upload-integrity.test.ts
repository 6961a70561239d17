import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, openSync, readFileSync, readdirSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.ts';
import { classify, mayHaveBeenProcessed } from '../../src/api/classify.ts';
import { Secret } from '../../src/config/secret.ts';
import { FileChangedError } from '../../src/errors.ts';
import { derivePublicId } from '../../src/sources/public-id.ts';
import type { Sandbox } from '../../src/sandbox/index.ts';
import { writeBigFile } from '../helpers/big-file.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { PEOPLE, runJob, sandboxRunArgs } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const SIZE = 50 * 1024 * 1024;
/** Far past what the socket buffers take while the sandbox sleeps (a few MB on loopback). */
const CHANGE_AT = 40 * 1024 * 1024;
/** The sandbox holds every request this long before reading it: the file is changed meanwhile. */
const LATENCY_MS = 1_000;

async function uploadStarted(s: Sandbox, count = 1): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if ((s.stats().byRoute.upload ?? 0) >= count) return;
    await sleep(5);
  }
  throw new Error('the upload never reached the sandbox');
}

function rewriteTail(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.alloc(1024 * 1024, 0x5a), 0, 1024 * 1024, CHANGE_AT);
  } finally {
    closeSync(fd);
  }
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A client's upload of one big file that the sandbox has begun to receive (and holds for LATENCY_MS); `upload` settles with its result or its error. */
async function uploadUnderWay() {
  const s = await withSandbox({ faults: { latencyMs: LATENCY_MS } });
  const file = path.join(tempDir(), 'big.bin');
  const sha = writeBigFile(file, SIZE);
  const client = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(s.password) });
  const upload = client
    .uploadDocument({ personId: PEOPLE[0]!, name: 'big', publicId: derivePublicId(PEOPLE[0]!, sha), filePath: file, expect: { sha256: sha, bytes: SIZE } })
    .catch((err: unknown) => err);
  try {
    await uploadStarted(s);
  } catch (err) {
    await client.close();
    throw err;
  }
  return { s, file, client, upload };
}

/** An import of one big file whose upload the sandbox has begun to receive (and holds for LATENCY_MS). */
async function importUnderWay() {
  const s = await withSandbox({ faults: { latencyMs: LATENCY_MS } });
  const dir = tempDir();
  const file = path.join(dir, 'big.bin');
  writeBigFile(file, SIZE);
  const manifest = path.join(dir, 'import.csv');
  writeFileSync(manifest, `personId,file,name\n${PEOPLE[0]},big.bin,Big scan\n`);
  const running = runJob({ command: 'import', manifest, ...sandboxRunArgs(s, dir), flags: { attempts: 3 } });
  await uploadStarted(s);
  return { s, dir, file, running };
}

/** The one row of that import's report.jsonl. */
function reportRow(dir: string): Record<string, unknown> | undefined {
  return readFileSync(path.join(dir, 'report', 'report.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)[0];
}

describe('a file that changes between hashing and sending (issue #15, item 6)', () => {
  it('rewritten during the upload: E_FILE_CHANGED, retryable without doubt, and the sandbox holds nothing', async () => {
    const { s, file, client, upload } = await uploadUnderWay();
    try {
      rewriteTail(file);
      const err = await upload;
      expect(err).toBeInstanceOf(FileChangedError);
      expect(classify(err)).toEqual({ kind: 'retry', ambiguous: false });
      expect(mayHaveBeenProcessed(err)).toBe(false);
      expect(s.documents()).toEqual([]);
      expect(s.stats().uploads).toBe(0);
    } finally {
      await client.close();
    }
  });

  it('grown during the upload: E_FILE_CHANGED, not a length mismatch', async () => {
    const { s, file, client, upload } = await uploadUnderWay();
    try {
      appendFileSync(file, Buffer.alloc(1024 * 1024, 1));
      const err = await upload;
      expect(err).toBeInstanceOf(FileChangedError);
      expect(String((err as Error).message)).toMatch(/grew/);
      expect(s.documents()).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it('an import whose file is rewritten during the upload stores and reports the bytes sent', async () => {
    const { s, dir, file, running } = await importUnderWay();
    rewriteTail(file);
    const r = await running;
    expect(r.exitCode).toBe(0);
    const sent = sha256(file);
    const row = reportRow(dir);
    expect(row).toMatchObject({ status: 'succeeded', sha256: sent, documentId: derivePublicId(PEOPLE[0]!, sent), attempts: 2 });
    const docs = s.documents();
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({ sha256: sent, documentId: derivePublicId(PEOPLE[0]!, sent), uploads: 1 });
    expect(readdirSync(path.join(s.dir, 'incoming'))).toEqual([]);
  });

  it('an import whose file is emptied during the upload fails as E_FILE_EMPTY and stores nothing', async () => {
    const { s, dir, file, running } = await importUnderWay();
    truncateSync(file, 0);
    const r = await running;
    expect(r.exitCode).toBe(1);
    const row = reportRow(dir);
    // The cut upload is tried again; that try finds the file empty and gives up for good.
    expect(row).toMatchObject({ status: 'failed', errorCode: 'E_FILE_EMPTY', attempts: 2 });
    expect(s.documents()).toEqual([]);
  });
});
