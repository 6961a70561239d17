import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import busboy from 'busboy';
import { describe, expect, it } from 'vitest';
import { multipartBody, type MultipartBody } from '../../src/api/multipart-body.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { FileChangedError } from '../../src/errors.ts';
import { classify, mayHaveBeenProcessed } from '../../src/api/classify.ts';

async function parse(body: MultipartBody): Promise<{ fields: Record<string, string>; file: { name: string; filename: string; type: string; bytes: Buffer }; length: number }> {
  const chunks: Buffer[] = [];
  for await (const c of Buffer.isBuffer(body.body) ? [body.body] : body.body) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  const fields: Record<string, string> = {};
  let file: { name: string; filename: string; type: string; bytes: Buffer } | undefined;
  await new Promise<void>((resolve, reject) => {
    const bb = busboy({ headers: { 'content-type': body.contentType } });
    bb.on('field', (name, value) => (fields[name] = value));
    bb.on('file', (name, stream, info) => {
      const parts: Buffer[] = [];
      stream.on('data', (d: Buffer) => parts.push(d));
      stream.on('end', () => (file = { name, filename: info.filename ?? '', type: info.mimeType, bytes: Buffer.concat(parts) }));
    });
    bb.on('close', resolve);
    bb.on('error', reject);
    Readable.from([raw]).pipe(bb);
  });
  return { fields, file: file!, length: raw.length };
}

describe('multipartBody', () => {
  const fields = [
    { name: 'personId', value: 'p-1' },
    { name: 'name', value: 'ID "card" – Ünïcode' },
    { name: 'description', value: 'line 1\nline 2' },
  ];

  it('an in-memory file: the exact length, every field and the bytes', async () => {
    const data = randomBytes(70_000);
    const body = multipartBody(fields, { field: 'file', fileName: 'scan "1".pdf', contentType: 'application/pdf', data, size: data.length });
    const got = await parse(body);
    expect(got.length).toBe(body.length);
    expect(got.fields).toEqual({ personId: 'p-1', name: 'ID "card" – Ünïcode', description: 'line 1\r\nline 2' });
    expect(got.file.filename).toBe('scan %221%22.pdf');
    expect(got.file.type).toBe('application/pdf');
    expect(got.file.bytes.equals(data)).toBe(true);
  });

  it('a streamed file gives the same body shape and closes the file', async () => {
    const data = randomBytes(600_000);
    const file = path.join(tempDir(), 'big.bin');
    writeFileSync(file, data);
    const handle = await open(file, 'r');
    const body = multipartBody(fields, { field: 'file', fileName: 'big.bin', contentType: 'application/octet-stream', handle, size: data.length });
    const got = await parse(body);
    expect(got.length).toBe(body.length);
    expect(got.file.bytes.equals(data)).toBe(true);
    await expect(handle.stat()).rejects.toThrow();
  });

  describe('a streamed file checked against what was hashed (issue #15, item 6)', () => {
    const size = 700_000; // three read chunks of 256 KiB
    async function sent(change: (file: string) => void): Promise<{ bytes: number; length: number; tailSent: boolean; err: unknown }> {
      const data = randomBytes(size);
      const file = path.join(tempDir(), 'doc.bin');
      writeFileSync(file, data);
      const sha256 = createHash('sha256').update(data).digest('hex');
      change(file);
      const body = multipartBody(fields, { field: 'file', fileName: 'doc.bin', contentType: 'application/octet-stream', handle: await open(file, 'r'), size, verify: { path: file, sha256 } });
      const chunks: Buffer[] = [];
      let err: unknown;
      try {
        for await (const c of body.body as Readable) chunks.push(c as Buffer);
      } catch (e) {
        err = e;
      }
      const raw = Buffer.concat(chunks);
      return { bytes: raw.length, length: body.length, tailSent: raw.subarray(-50).toString('latin1').includes('--\r\n'), err };
    }

    it('unchanged: the whole body', async () => {
      const r = await sent(() => undefined);
      expect(r.err).toBeUndefined();
      expect(r.bytes).toBe(r.length);
    });

    it('rewritten with the same size: stops before the last chunk and the closing boundary', async () => {
      const r = await sent((file) => writeFileSync(file, randomBytes(size)));
      expect(r.err).toBeInstanceOf(FileChangedError);
      expect((r.err as FileChangedError).code).toBe('E_FILE_CHANGED');
      expect(r.bytes).toBeLessThan(r.length);
      expect(r.tailSent).toBe(false);
      expect(classify(r.err)).toEqual({ kind: 'retry', ambiguous: false });
      expect(mayHaveBeenProcessed(r.err)).toBe(false);
    });

    it('grown: stops without sending more than Content-Length', async () => {
      const r = await sent((file) => appendFileSync(file, randomBytes(300_000)));
      expect(r.err).toBeInstanceOf(FileChangedError);
      expect(r.bytes).toBeLessThan(r.length);
    });

    it('shrunk: stops before the end', async () => {
      const r = await sent((file) => truncateSync(file, 100_000));
      expect(r.err).toBeInstanceOf(FileChangedError);
      expect(r.tailSent).toBe(false);
    });
  });
});
